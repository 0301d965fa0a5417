"""PyTorch baseline for bench/ssl/bench_resnet_step.cpp: one supervised-style training step of a
torchvision ResNet (small stem as bench_moco_step.py's make_encoder) on a fixed batch: forward,
loss = mean of the logits, zero_grad, backward, SGD (momentum 0.9, weight decay 1e-4); timed the
same way (one warm-up step, then steps between two synchronisations, median of 5 rounds).

    python3 bench/torch_ref/bench_resnet_step.py [--device cpu|cuda|all] [--quick]
        [--case r18-64|r18-32|r50-224|all] [--batch N]
"""

import sys

import torch

from bench_moco_step import make_encoder
from timing import STEP_PRECISIONS, amp, channels_last, run_benchmark, seconds_per_call

CASES = {  # name: (arch, small stem, pixels, batch)
    "r18-64": ("resnet18", True, 64, 32),
    "r18-32": ("resnet18", True, 32, 32),
    "r50-224": ("resnet50", False, 224, 32),
}


def take_option(name, default):
    """Removes `name VALUE` from the command line (timing.run_benchmark parses the rest)."""
    if name in sys.argv:
        i = sys.argv.index(name)
        value = sys.argv[i + 1]
        del sys.argv[i:i + 2]
        return value
    return default


def bench_case(device, arch, small_stem, size, batch):
    torch.manual_seed(0)
    model = channels_last(make_encoder(arch, 1000, False, small_stem).to(device))
    optimizer = torch.optim.SGD(model.parameters(), 0.1, momentum=0.9, weight_decay=1e-4)
    images = channels_last(torch.randn(batch, 3, size, size, device=device))
    last = {}

    def step():
        with amp(device):  # --precision bf16: autocast
            loss = model(images).float().mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        last["loss"] = loss.item()

    seconds = seconds_per_call(device, 10 if device.type == "cuda" else 1, step)
    print(f"{str(device):<6} {arch:<9} {'small-stem' if small_stem else '':<11} {size:>4}px batch {batch:>3}: "
          f"{1e3 * seconds:8.1f} ms/step {batch / seconds:8.1f} img/s  (loss {last['loss']:.4f})")


if __name__ == "__main__":
    which = take_option("--case", "all")
    batch_override = int(take_option("--batch", "0"))
    if "--quick" in sys.argv and which == "all":
        which = "r18-64"
    names = list(CASES) if which == "all" else [which]

    def bench_device(device, quick):
        for name in names:
            arch, small_stem, size, batch = CASES[name]
            bench_case(device, arch, small_stem, size, batch_override or batch)

    run_benchmark(bench_device, STEP_PRECISIONS)
