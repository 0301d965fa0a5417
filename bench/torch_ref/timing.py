"""How the PyTorch baselines time an op and run, the same as bench/ops/bench_timing.h: one
warm-up call, then `repeats` calls between two synchronisations, the median of 5 rounds; and
the shared command line [--device cpu|cuda|all] [--quick]."""
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
    args = parser.parse_args()
    torch.set_num_threads(os.cpu_count())  # PyTorch at its best on this machine's cores
    if args.device in ("cpu", "all"):
        bench_device(torch.device("cpu"), args.quick)
    if args.device in ("cuda", "all"):
        if torch.cuda.is_available():
            bench_device(torch.device("cuda"), args.quick)
        else:
            print("\ncuda: skipped (torch sees no GPU)")
