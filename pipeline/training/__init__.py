"""Fine-tuning DEFR with Ray Train: data, sampling, augmentation, the per-worker recipe, checkpoints."""
