#!/usr/bin/python3
"""What labels buy at the quickstart's scale: the quickstart's encoder trained with the labels.

The quickstart pretrains a ResNet-18 of width 8 (small-image stem) at 32 px for 558 steps of 64 and
then asks how well its frozen features separate the classes. This script trains the same network,
from torchvision's initialisation, directly with the labels for the same number of steps, with the
same geometric augmentation as pretraining (RandomResizedCrop 0.2-1 and a flip; no colour jitter),
SGD with momentum 0.9 and a cosine schedule, and prints the validation top-1 after every epoch with
the evaluation transform of `moco lincls` (Resize to size * 256/224, CenterCrop). It is the
supervised yardstick for the quickstart's table: if labels cannot lift this net far above chance in
that budget, neither can self-supervision.

Run with Debian's Python, which has PyTorch and torchvision (the engine never needs Python):

    /usr/bin/python3 tools/supervised_reference.py quickstart-out/synth            # about 75 s on 2 cores
    /usr/bin/python3 tools/supervised_reference.py quickstart-out/synth --epochs 36 --lr 0.1
"""
import argparse
import math
import os

import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision
import torchvision.transforms as T


class BasicBlock(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        y = F.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return F.relu(y + (x if self.downsample is None else self.downsample(x)))


def small_stem_resnet18(width, classes):
    """ResNet-18 with stage widths width * (1, 2, 4, 8) and the small-image stem (3x3 conv, stride
    1, no max-pool), initialised as torchvision does (Kaiming normal, fan-out)."""
    layers = [nn.Conv2d(3, width, 3, 1, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU()]
    cin = width
    for multiple, stride in ((1, 1), (2, 2), (4, 2), (8, 2)):
        layers += [BasicBlock(cin, width * multiple, stride), BasicBlock(width * multiple, width * multiple, 1)]
        cin = width * multiple
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(cin, classes)]
    model = nn.Sequential(*layers)
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
    return model


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("root", help="an image folder root with train/ and val/ (e.g. quickstart-out/synth)")
    parser.add_argument("--width", type=int, default=8)
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("-b", "--batch-size", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=18, help="18 epochs of 2000 images is the quickstart's 558 steps")
    parser.add_argument("--lr", type=float, default=0.03, help="0.03 was the best of 0.03, 0.1 and 0.3 on the quickstart data")
    parser.add_argument("--wd", type=float, default=5e-4)
    parser.add_argument("--crop-min-scale", type=float, default=0.2)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    torch.manual_seed(args.seed)
    torch.set_num_threads(os.cpu_count() or 1)
    normalize = T.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])
    size = args.image_size
    train = torchvision.datasets.ImageFolder(os.path.join(args.root, "train"), T.Compose([
        T.RandomResizedCrop(size, scale=(args.crop_min_scale, 1.0)), T.RandomHorizontalFlip(), T.ToTensor(), normalize]))
    val = torchvision.datasets.ImageFolder(os.path.join(args.root, "val"), T.Compose([
        T.Resize(round(size * 256 / 224)), T.CenterCrop(size), T.ToTensor(), normalize]))
    train_loader = torch.utils.data.DataLoader(train, args.batch_size, shuffle=True, drop_last=True, num_workers=1)
    val_loader = torch.utils.data.DataLoader(val, 256)
    model = small_stem_resnet18(args.width, len(train.classes))
    optimizer = torch.optim.SGD(model.parameters(), args.lr, momentum=0.9, weight_decay=args.wd)
    total_steps, step, best = args.epochs * len(train_loader), 0, 0.0
    print(f"supervised: resnet18 small stem width {args.width}, {size} px, {len(train)} training images, "
          f"{total_steps} steps of {args.batch_size}, lr {args.lr} (cosine), chance {100 / len(train.classes):.1f}%")
    for epoch in range(args.epochs):
        model.train()
        for x, y in train_loader:
            for group in optimizer.param_groups:
                group["lr"] = args.lr * 0.5 * (1 + math.cos(math.pi * step / total_steps))
            loss = F.cross_entropy(model(x), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            step += 1
        model.eval()
        with torch.no_grad():
            correct = sum((model(x).argmax(1) == y).sum().item() for x, y in val_loader)
        top1 = 100 * correct / len(val)
        best = max(best, top1)
        print(f"epoch {epoch + 1:3d}/{args.epochs}  step {step:5d}  train loss {loss.item():.3f}  val top-1 {top1:6.2f}%",
              flush=True)
    print(f"best {best:.2f}%  last {top1:.2f}%")


if __name__ == "__main__":
    main()
