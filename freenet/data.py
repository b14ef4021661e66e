"""Image data for training and for checking exported artifacts on real images.

Two sources, neither downloads anything: an ImageFolder directory of the user's, and the 1,797
handwritten digits that ship inside scikit-learn's wheel (`load_digits`, 8x8 grayscale), upsampled
to a configurable size and replicated to three channels so that any 3-channel model can take them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.data import Dataset, Subset, TensorDataset

DIGITS = "digits"
# The digits are in [0, 16]; scaled to [0, 1] and normalised with these.
DIGITS_MEAN = (0.5, 0.5, 0.5)
DIGITS_STD = (0.5, 0.5, 0.5)


@dataclass
class DataSplit:
    train: Dataset
    val: Dataset
    num_classes: int
    input_size: tuple[int, int, int]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    name: str


def digits_tensors(image_size: int = 32, limit: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """All digits (or the first `limit`) as normalised (N, 3, S, S) float tensors and (N,) labels.

    `limit` resizes only those: all 1797 digits at 224 px are 1.1 GB and ~2 s, paid for every model
    the export prepares when it needs 32 (the values are the same either way: resizing is per image)."""
    from sklearn.datasets import load_digits

    if image_size < 8:
        raise ValueError(f"image_size must be >= 8 for the 8x8 digits, got {image_size}")
    d = load_digits()
    if limit is not None:
        d.images, d.target = d.images[:limit], d.target[:limit]
    x = torch.tensor(d.images, dtype=torch.float32).unsqueeze(1) / 16.0
    x = F.interpolate(x, size=(image_size, image_size), mode="bilinear", align_corners=False)
    x = x.repeat(1, 3, 1, 1)
    mean = torch.tensor(DIGITS_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(DIGITS_STD).view(1, 3, 1, 1)
    return (x - mean) / std, torch.tensor(d.target, dtype=torch.long)


def _split_indices(n: int, val_fraction: float, seed: int) -> tuple[list[int], list[int]]:
    g = torch.Generator().manual_seed(seed)
    perm = torch.randperm(n, generator=g).tolist()
    n_val = max(1, int(round(n * val_fraction)))
    return perm[n_val:], perm[:n_val]


def load_digits_split(image_size: int = 32, val_fraction: float = 0.2, seed: int = 0) -> DataSplit:
    x, y = digits_tensors(image_size)
    train_idx, val_idx = _split_indices(len(y), val_fraction, seed)
    ds = TensorDataset(x, y)
    return DataSplit(
        Subset(ds, train_idx), Subset(ds, val_idx), 10, (3, image_size, image_size), DIGITS_MEAN, DIGITS_STD, DIGITS
    )


def load_imagefolder_split(root: str | Path, image_size: int = 224, val_fraction: float = 0.1, seed: int = 0) -> DataSplit:
    """`root/train` + `root/val` if both exist, else one class-per-folder tree split at random."""
    from torchvision import datasets, transforms

    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"image folder {root} does not exist")
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    norm = transforms.Normalize(mean, std)
    train_tf = transforms.Compose(
        [transforms.RandomResizedCrop(image_size), transforms.RandomHorizontalFlip(), transforms.ToTensor(), norm]
    )
    val_tf = transforms.Compose(
        [transforms.Resize(int(image_size / 0.875)), transforms.CenterCrop(image_size), transforms.ToTensor(), norm]
    )
    if (root / "train").is_dir() and (root / "val").is_dir():
        train = datasets.ImageFolder(root / "train", train_tf)
        val = datasets.ImageFolder(root / "val", val_tf)
        if train.classes != val.classes:
            raise ValueError(f"{root}/train and {root}/val have different class folders")
        classes = train.classes
    else:
        full_train = datasets.ImageFolder(root, train_tf)
        full_val = datasets.ImageFolder(root, val_tf)
        train_idx, val_idx = _split_indices(len(full_train), val_fraction, seed)
        train, val, classes = Subset(full_train, train_idx), Subset(full_val, val_idx), full_train.classes
    if len(classes) < 2:
        raise ValueError(f"{root} has {len(classes)} class folder(s); need at least 2")
    return DataSplit(train, val, len(classes), (3, image_size, image_size), mean, std, str(root))


def load_split(dataset: str, image_size: int | None = None, seed: int = 0) -> DataSplit:
    """`digits` (shipped with scikit-learn) or a path to an ImageFolder tree."""
    if dataset == DIGITS:
        return load_digits_split(image_size or 32, seed=seed)
    return load_imagefolder_split(dataset, image_size or 224, seed=seed)
