"""Feed a torch DataLoader with regtune.augment: the same batches whatever num_workers.

The dataset returns raw uint8 images with their index; the collate function augments the whole
batch in one regtune call, keyed by (seed, epoch, sample index), so every sample gets the same
augmentation with 0 or 2 workers (or any batch size, shuffle order or thread count): per-worker
NumPy seeds never enter. Run::

    python examples/augment_dataloader.py

Prints the batches' checksums for num_workers=0 and 2 and checks that they are equal.
"""

from __future__ import annotations

import hashlib

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

import regtune
from regtune import augment as A

MEAN, STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)


class RawImages(Dataset):
    """CIFAR-sized uint8 images (random here; a real one decodes files), with their index."""

    def __init__(self, n: int = 512) -> None:
        rng = np.random.default_rng(0)
        self.images = rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)
        self.labels = rng.integers(0, 10, n)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int):
        return self.images[i], int(self.labels[i]), i


class AugmentCollate:
    """Stacks a batch and augments it in one call. ``epoch`` is read when the loader's workers
    start (each ``iter(loader)`` pickles this object into them), so set it before each epoch."""

    def __init__(self, seed: int) -> None:
        self.pipe = A.Pipeline([A.RandomCrop(32, padding=4, padding_mode="reflect"), A.HorizontalFlip(),
                                A.ColorJitter(0.2, 0.2, 0.2), A.Normalize(MEAN, STD), A.RandomErasing(0.25)],
                               seed=seed, layout="NCHW")  # fmt: skip
        self.mix = A.CutMix(1.0, num_classes=10, seed=seed, layout="NCHW")
        self.epoch = 0

    def __call__(self, items):
        images = np.stack([it[0] for it in items])
        labels = np.array([it[1] for it in items])
        indices = np.array([it[2] for it in items])
        x = self.pipe(images, indices=indices, epoch=self.epoch)
        x, soft = self.mix(x, labels, indices=indices, epoch=self.epoch)
        return torch.from_numpy(x), torch.from_numpy(soft), torch.from_numpy(indices)


def worker_init(_: int) -> None:
    regtune.set_num_threads(1)  # the workers are the parallelism; keep each one on its core


def batches(num_workers: int, epochs: int = 2) -> list[str]:
    data = RawImages()
    collate = AugmentCollate(seed=2024)
    # The shuffle order comes from torch's generator, seeded the same for both runs.
    g = torch.Generator().manual_seed(0)
    loader = DataLoader(data, batch_size=64, shuffle=True, num_workers=num_workers, collate_fn=collate,
                        generator=g, worker_init_fn=worker_init if num_workers else None)  # fmt: skip
    digests = []
    for epoch in range(epochs):
        collate.epoch = epoch
        for x, soft, idx in loader:
            h = hashlib.sha256(x.numpy().tobytes() + soft.numpy().tobytes() + idx.numpy().tobytes())
            digests.append(h.hexdigest()[:16])
    return digests


def main() -> None:
    serial = batches(num_workers=0)
    parallel = batches(num_workers=2)
    for k, (a, b) in enumerate(zip(serial, parallel)):
        print(f"batch {k:2d}: workers=0 {a}  workers=2 {b}")
    assert serial == parallel, "batches differ between num_workers=0 and 2"
    print(f"{len(serial)} batches identical with num_workers=0 and num_workers=2")


if __name__ == "__main__":
    main()
