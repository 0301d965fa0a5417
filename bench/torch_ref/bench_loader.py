"""PyTorch baseline for our data-loader benchmark: MoCo v2's training input pipeline as the MoCo
reference code builds it (torchvision ImageFolder + TwoCropsTransform of the --aug-plus
augmentation, PIL decoding, a DataLoader with worker processes), timed in images per second.

    python3 bench/torch_ref/bench_loader.py --data DIR [--workers 1,2] [--batch-size 32] [--size 224]
                                            [--batches 20]

DIR is an ImageFolder root (one folder per class); DIR/train is used when it exists. For each
worker count a fresh DataLoader is made, 2 batches are consumed untimed (worker start-up and the
first decodes are excluded), then --batches batches are timed. One line per worker count:

    torch_loader workers=2 batch=32 size=224 images_per_s=123.4 views_per_s=246.8

images_per_s counts source images (each gives two augmented views, the query and the key).
"""
import argparse
import os
import random
import time

import PIL
import torch
import torchvision
from PIL import ImageFilter
from torch.utils.data import DataLoader, RandomSampler
from torchvision import datasets, transforms

WARMUP_BATCHES = 2


class GaussianBlur:
    """MoCo's blur: PIL's GaussianBlur with sigma drawn uniformly from [sigma[0], sigma[1]]."""

    def __init__(self, sigma=(0.1, 2.0)):
        self.sigma = sigma

    def __call__(self, x):
        return x.filter(ImageFilter.GaussianBlur(radius=random.uniform(self.sigma[0], self.sigma[1])))


class TwoCropsTransform:
    """Two independently augmented views of one image: [query, key]."""

    def __init__(self, base):
        self.base = base

    def __call__(self, x):
        return [self.base(x), self.base(x)]


def moco_v2_augmentation(size):
    """MoCo v2's --aug-plus transform (main_moco.py), ImageNet normalisation."""
    return transforms.Compose([
        transforms.RandomResizedCrop(size, scale=(0.2, 1.0)),
        transforms.RandomApply([transforms.ColorJitter(0.4, 0.4, 0.4, 0.1)], p=0.8),
        transforms.RandomGrayscale(p=0.2),
        transforms.RandomApply([GaussianBlur([0.1, 2.0])], p=0.5),
        transforms.RandomHorizontalFlip(),
        transforms.ToTensor(),
        transforms.Normalize(mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225]),
    ])


def single_thread_worker(_worker_id):
    # Each worker is one process doing one image at a time; letting each also start a full
    # intra-op thread pool would oversubscribe the cores (workers x threads) for no gain.
    torch.set_num_threads(1)


def images_per_second(dataset, workers, batch_size, batches):
    # shuffle=True, but with a sampler that draws enough indices (fresh permutations back to back)
    # that a small folder does not end the epoch, and restart the workers, inside the timed part.
    needed = (WARMUP_BATCHES + batches) * batch_size
    sampler = RandomSampler(dataset, replacement=False, num_samples=max(needed, len(dataset)))
    loader = DataLoader(dataset, batch_size=batch_size, sampler=sampler, num_workers=workers, drop_last=True,
                        pin_memory=False, persistent_workers=False,
                        worker_init_fn=single_thread_worker if workers > 0 else None)
    it = iter(loader)
    for _ in range(WARMUP_BATCHES):
        next(it)
    start = time.perf_counter()
    for _ in range(batches):
        (query, key), _labels = next(it)
        assert query.shape == key.shape == (batch_size, 3, query.shape[2], query.shape[3])
    seconds = time.perf_counter() - start
    del it, loader  # shut the workers down before the next configuration starts its own
    return batches * batch_size / seconds


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", required=True, help="ImageFolder root (DIR/train is used when it exists)")
    parser.add_argument("--workers", default="1,2", help="comma-separated worker counts")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--batches", type=int, default=20)
    args = parser.parse_args()
    root = os.path.join(args.data, "train") if os.path.isdir(os.path.join(args.data, "train")) else args.data
    dataset = datasets.ImageFolder(root, TwoCropsTransform(moco_v2_augmentation(args.size)))
    print(f"torch {torch.__version__} torchvision {torchvision.__version__} PIL {PIL.__version__} "
          f"cpus {os.cpu_count()} images {len(dataset)} classes {len(dataset.classes)} root {root}")
    for workers in [int(w) for w in args.workers.split(",") if w.strip()]:
        rate = images_per_second(dataset, workers, args.batch_size, args.batches)
        print(f"torch_loader workers={workers} batch={args.batch_size} size={args.size} "
              f"images_per_s={rate:.1f} views_per_s={2 * rate:.1f}", flush=True)


if __name__ == "__main__":
    main()
