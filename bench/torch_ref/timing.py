"""How the PyTorch baselines time an op and run, the same as bench/ops/bench_timing.h: one
warm-up call, then `repeats` calls between two synchronisations, the median of 5 rounds; and
the shared command line [--device cpu|cuda|all] [--quick] [--precision fp32|tf32], whose
precision sets cuDNN's and cuBLAS's TF32 switches as --precision does in our benchmarks
(engine/precision.h). PyTorch's own default lets cuDNN use TF32: a baseline left at it would
run tensor cores against our f32 FMA convolutions."""
import argparse
import os
import statistics
import time

import torch


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


def run_benchmark(bench_device):
    """The whole main() of a baseline: bench_device(device, quick) on each device asked for."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--device", default="all", choices=["cpu", "cuda", "all"])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--precision", default="fp32", choices=["fp32", "tf32"])
    args = parser.parse_args()
    tf32 = args.precision == "tf32"
    torch.backends.cuda.matmul.allow_tf32 = tf32
    torch.backends.cudnn.allow_tf32 = tf32
    print(f"precision: {args.precision} (GEMMs and convolutions"
          f"{' on TF32 tensor cores, GPU only' if tf32 else ' in f32, TF32 off'})")
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
