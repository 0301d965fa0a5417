#!/usr/bin/python3
"""How hard is the synthetic dataset of `moco synth`? A linear probe on untrained features.

The dataset is meant to need learned features: its classes differ only in how parts are arranged,
while colours, textures, pose and clutter are random. So a linear classifier on the global-pooled
features of a randomly initialised ResNet-18 should stay far from 100% (chance is 1 / classes); if
it does not, the dataset is too easy to show what self-supervision learns. Raw pixels (downsampled
to 24 x 24) are probed too, as the floor of what needs no features at all. With
--supervised-epochs N, a small CNN is also trained with the labels (at 48 px, flips and shifts), as
the ceiling: it shows that the arrangement of the parts can be learned from these pixels.

Run with Debian's Python, which has PyTorch and torchvision (the engine never needs Python):

    build/tools/moco synth /tmp/synth
    /usr/bin/python3 tools/synth_difficulty_probe.py /tmp/synth [--train-per-class 100 --val-per-class 50]
    /usr/bin/python3 tools/synth_difficulty_probe.py /tmp/synth --train-per-class 500 --val-per-class 100 \
        --supervised-epochs 40      # about 7 minutes on 2 cores

The probe is multinomial logistic regression (L-BFGS) on standardised features; its L2 weight is
chosen on a fifth of the training images held out, then it is refitted on all of them and scored on
val/.
"""
import argparse
import os

import numpy as np
import torch
import torch.nn.functional as F
import torchvision
from PIL import Image


def load_split(root, split, per_class):
    classes = sorted(os.listdir(os.path.join(root, split)))
    images, labels = [], []
    for label, name in enumerate(classes):
        files = sorted(os.listdir(os.path.join(root, split, name)))[:per_class]
        for f in files:
            image = Image.open(os.path.join(root, split, name, f)).convert("RGB")
            images.append(np.asarray(image, dtype=np.float32) / 255.0)
            labels.append(label)
    return torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).contiguous(), torch.tensor(labels), classes


@torch.no_grad()
def random_resnet18_features(images, seed):
    torch.manual_seed(seed)
    model = torchvision.models.resnet18()  # torchvision's own initialisation, no weights loaded
    model.fc = torch.nn.Identity()
    model.eval()
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    return torch.cat([model((batch - mean) / std) for batch in images.split(256)])


def pixel_features(images):
    return F.adaptive_avg_pool2d(images, 24).flatten(1)


def fit_logistic(x, y, classes, weight_decay):
    w = torch.zeros(x.shape[1], classes, dtype=torch.float64, requires_grad=True)
    b = torch.zeros(classes, dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS([w, b], max_iter=300, line_search_fn="strong_wolfe")

    def closure():
        optimizer.zero_grad()
        loss = F.cross_entropy(x @ w + b, y) + weight_decay * (w * w).sum()
        loss.backward()
        return loss

    optimizer.step(closure)
    return lambda z: (z @ w + b).argmax(1)


def probe(train_x, train_y, val_x, val_y, classes):
    mean, std = train_x.mean(0), train_x.std(0) + 1e-6
    train_x, val_x = ((train_x - mean) / std).double(), ((val_x - mean) / std).double()
    generator = torch.Generator().manual_seed(0)
    order = torch.randperm(len(train_y), generator=generator)
    held, fit = order[: len(order) // 5], order[len(order) // 5 :]
    best = max((1e-4, 1e-3, 1e-2, 1e-1, 1.0),
               key=lambda wd: (fit_logistic(train_x[fit], train_y[fit], classes, wd)(train_x[held]) == train_y[held]).float().mean())
    predict = fit_logistic(train_x, train_y, classes, best)
    train_acc = (predict(train_x) == train_y).float().mean().item()
    val_acc = (predict(val_x) == val_y).float().mean().item()
    return train_acc, val_acc, best


def supervised_accuracy(train_images, train_y, val_images, val_y, classes, epochs):
    """A four-block CNN trained with labels at 48 px (SGD, one-cycle schedule): val accuracy."""
    torch.manual_seed(0)
    side, pad = 48, 4
    train_x = F.interpolate(train_images, size=side, mode="bilinear", antialias=True)
    val_x = F.interpolate(val_images, size=side, mode="bilinear", antialias=True)

    def block(cin, cout):
        return torch.nn.Sequential(
            torch.nn.Conv2d(cin, cout, 3, padding=1, bias=False), torch.nn.BatchNorm2d(cout), torch.nn.ReLU(),
            torch.nn.Conv2d(cout, cout, 3, padding=1, bias=False), torch.nn.BatchNorm2d(cout), torch.nn.ReLU(),
            torch.nn.MaxPool2d(2))

    model = torch.nn.Sequential(block(3, 16), block(16, 32), block(32, 64), block(64, 128),
                                torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(128, classes))
    batch = 128
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4, nesterov=True)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, 0.1, total_steps=epochs * ((len(train_y) + batch - 1) // batch))
    for _ in range(epochs):
        model.train()
        for idx in torch.randperm(len(train_y)).split(batch):
            x = train_x[idx]
            x = torch.where((torch.rand(len(idx)) < 0.5).view(-1, 1, 1, 1), x.flip(3), x)
            dx, dy = torch.randint(0, 2 * pad + 1, (2,))
            x = F.pad(x, (pad,) * 4, mode="reflect")[:, :, dy:dy + side, dx:dx + side]
            loss = F.cross_entropy(model(x), train_y[idx])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
    model.eval()
    with torch.no_grad():
        predictions = torch.cat([model(b).argmax(1) for b in val_x.split(500)])
    return (predictions == val_y).float().mean().item()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("root", help="a `moco synth` output folder (with train/ and val/)")
    parser.add_argument("--train-per-class", type=int, default=100)
    parser.add_argument("--val-per-class", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0, help="seed of the random ResNet-18")
    parser.add_argument("--supervised-epochs", type=int, default=0,
                        help="also train a small CNN with the labels for this many epochs (0: skip)")
    args = parser.parse_args()

    torch.set_num_threads(os.cpu_count() or 1)
    train_images, train_y, classes = load_split(args.root, "train", args.train_per_class)
    val_images, val_y, _ = load_split(args.root, "val", args.val_per_class)
    print(f"{len(classes)} classes, {len(train_y)} train and {len(val_y)} val images of "
          f"{train_images.shape[-1]} px; chance is {100 / len(classes):.1f}%")
    for name, features in (("raw pixels (24 x 24)", pixel_features),
                           ("random-init ResNet-18, global pool", lambda x: random_resnet18_features(x, args.seed))):
        train_acc, val_acc, wd = probe(features(train_images), train_y, features(val_images), val_y, len(classes))
        print(f"{name:36s} linear probe: val {100 * val_acc:5.1f}%  (train {100 * train_acc:5.1f}%, L2 {wd:g})")
    if args.supervised_epochs > 0:
        accuracy = supervised_accuracy(train_images, train_y, val_images, val_y, len(classes), args.supervised_epochs)
        print(f"{'small CNN trained with labels, 48 px':36s} {args.supervised_epochs} epochs: val {100 * accuracy:5.1f}%")


if __name__ == "__main__":
    main()
