"""Training augmentation of the paper: random resized crop, horizontal flip, colour jitter."""
from __future__ import annotations

from pipeline.model import ModelConfig, _ToRGB


def train_transform(config: ModelConfig, crop_scale: float = 0.5, jitter: float = 0.4):
    """PIL image -> normalized [3, S, S] tensor with the recipe's augmentations.

    Args:
        crop_scale: smallest fraction of the image area a random crop keeps (upper bound 1).
        jitter: brightness/contrast/saturation jitter strength (0 disables).
    """
    from torchvision import transforms as T

    s = int(config.image_size)
    steps = [_ToRGB(),
             T.RandomResizedCrop((s, s), scale=(crop_scale, 1.0), interpolation=T.InterpolationMode.BICUBIC,
                                 antialias=True),
             T.RandomHorizontalFlip()]
    if jitter > 0:
        steps.append(T.ColorJitter(brightness=jitter, contrast=jitter, saturation=jitter))
    steps += [T.ToTensor(), T.Normalize(config.mean, config.std)]
    return T.Compose(steps)
