"""Raw datasets (HICO, HICO-DET, the synthetic demo) to the pipeline's Parquet tables."""
