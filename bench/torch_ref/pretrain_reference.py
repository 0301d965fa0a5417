"""The reference's MoCo v2 training loop in PyTorch, for side-by-side loss curves with `moco pretrain`:
the model of bench_moco_step.py (per-group BatchNorm, shuffle BN on one device), MoCo v2's
augmentation of bench_loader.py, SGD with the reference's cosine schedule, and one line per
`--print-freq` steps with the mean loss and top-1/top-5 of those steps, as metrics.jsonl has them.

    python3 bench/torch_ref/pretrain_reference.py DATA/train --arch resnet18 --small-stem -b 32 \\
        --groups 4 --moco-k 512 --moco-dim 64 --moco-m 0.99 --lr 0.01 --moco-t 0.2 --image-size 32 \\
        --epochs 4 --max-steps 300
"""

import argparse
import math

import torch
import torch.nn as nn
from torch.utils.data import DataLoader
from torchvision import datasets

from bench_loader import TwoCropsTransform, moco_v2_augmentation
from bench_moco_step import MoCoStep


def main():
    p = argparse.ArgumentParser()
    p.add_argument("data")
    p.add_argument("--arch", default="resnet18")
    p.add_argument("--small-stem", action="store_true")
    p.add_argument("-b", "--batch-size", type=int, default=32)
    p.add_argument("--groups", type=int, default=4)
    p.add_argument("--moco-k", type=int, default=512)
    p.add_argument("--moco-dim", type=int, default=64)
    p.add_argument("--moco-m", type=float, default=0.99)
    p.add_argument("--moco-t", type=float, default=0.2)
    p.add_argument("--lr", type=float, default=0.01)
    p.add_argument("--image-size", type=int, default=32)
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--max-steps", type=int, default=300)
    p.add_argument("--print-freq", type=int, default=10)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("-j", "--workers", type=int, default=2)
    a = p.parse_args()
    torch.manual_seed(a.seed)
    dataset = datasets.ImageFolder(a.data, TwoCropsTransform(moco_v2_augmentation(a.image_size)))
    loader = DataLoader(dataset, a.batch_size, shuffle=True, num_workers=a.workers, drop_last=True)
    model = MoCoStep(a.arch, a.moco_dim, a.moco_k, a.moco_m, a.moco_t, True, a.groups, a.small_stem)
    optimizer = torch.optim.SGD(model.encoder_q.parameters(), a.lr, momentum=0.9, weight_decay=1e-4)
    criterion = nn.CrossEntropyLoss()
    step, window = 0, []
    for epoch in range(a.epochs):
        for group in optimizer.param_groups:
            group["lr"] = a.lr * 0.5 * (1.0 + math.cos(math.pi * epoch / a.epochs))
        for (im_q, im_k), _ in loader:
            logits = model(im_q, im_k)
            labels = torch.zeros(logits.shape[0], dtype=torch.long)
            loss = criterion(logits, labels)
            top5 = logits.topk(5, dim=1).indices
            acc1 = (top5[:, 0] == 0).float().mean().item() * 100
            acc5 = (top5 == 0).any(dim=1).float().mean().item() * 100
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            step += 1
            window.append((loss.item(), acc1, acc5))
            if step % a.print_freq == 0:
                n = len(window)
                print(f"epoch {epoch} step {step} loss {sum(w[0] for w in window) / n:.4f} "
                      f"acc1 {sum(w[1] for w in window) / n:.1f} acc5 {sum(w[2] for w in window) / n:.1f}", flush=True)
                window = []
            if step >= a.max_steps:
                return


if __name__ == "__main__":
    main()
