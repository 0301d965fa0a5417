"""How the PyTorch baselines time an op and run, the same as bench/ops/bench_timing.h: one
warm-up call, then `repeats` calls between two synchronisations, the median of 5 rounds; and
the shared command line [--device cpu|cuda|all] [--quick] [--precision fp32|tf32|bf16], whose
precision sets cuDNN's and cuBLAS's TF32 switches as --precision does in our benchmarks
(engine/precision.h). PyTorch's own default lets cuDNN use TF32: a baseline left at it would
run tensor cores against our f32 FMA convolutions.

bf16 is the baseline a PyTorch user would pick for speed: the step twins run their forward and
loss under torch.autocast(dtype=torch.bfloat16) with the model and the inputs channels_last
(`amp(device)` and `channels_last(x)` below; f32 master weights, as autocast keeps them). Only the
step twins offer it (their run_benchmark(..., precisions=STEP_PRECISIONS))."""
import contextlib
import argparse
import os
import statistics
import time

import torch


PRECISION = "fp32"  # set by run_benchmark from --precision
STEP_PRECISIONS = ("fp32", "tf32", "bf16")


def amp(device):
    """The step's forward and loss under bf16 autocast with --precision bf16, else as they are."""
    if PRECISION != "bf16":
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)


def channels_last(x):
    """A model or a 4-D input in channels_last with --precision bf16 (autocast's fast layout)."""
    return x.to(memory_format=torch.channels_last) if PRECISION == "bf16" else x


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def seconds_per_call(device, repeats, fn):
    fn()
    sync(device)
    rounds = []
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(repeats):
            fn()
        sync(device)
        rounds.append((time.perf_counter() - start) / repeats)
    return statistics.median(rounds)


def run_benchmark(bench_device, precisions=("fp32", "tf32")):
    """The whole main() of a baseline: bench_device(device, quick) on each device asked for, in
    one of `precisions`."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--device", default="all", choices=["cpu", "cuda", "all"])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--precision", default="fp32", choices=list(precisions))
    args = parser.parse_args()
    global PRECISION
    PRECISION = args.precision
    tf32 = args.precision == "tf32"
    torch.backends.cuda.matmul.allow_tf32 = tf32
    torch.backends.cudnn.allow_tf32 = tf32
    what = {"fp32": " in f32, TF32 off", "tf32": " on TF32 tensor cores, GPU only",
            "bf16": " on bf16 operands under autocast, channels_last, f32 weights; TF32 off"}[args.precision]
    print(f"precision: {args.precision} (GEMMs and convolutions{what})")
    torch.set_num_threads(os.cpu_count())  # PyTorch at its best on this machine's cores
    if args.device in ("cpu", "all"):
        if tf32:
            print(f"\ncpu: skipped (--precision {args.precision} is a GPU math mode)")
        else:
            bench_device(torch.device("cpu"), args.quick)
    if args.device in ("cuda", "all"):
        if torch.cuda.is_available():
            bench_device(torch.device("cuda"), args.quick)
        else:
            print("\ncuda: skipped (torch sees no GPU)")
