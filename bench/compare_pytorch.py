#!/usr/bin/python3
"""compare_pytorch.py - the PyTorch side of bench/bench_train.c.

Trains the same MLPs (784-256-256-10 at batch 64, 784-1024-1024-10 at batch
256; ReLU; cross-entropy; Adam lr 1e-3 or SGD lr 1e-2, zero_grad before
backward) on the
same kind of synthetic batch, timed the same way (warm-up, then windows of
>= 5 steps and ~0.3 s, best window's mean step time), and prints the same
JSON lines with "impl":"pytorch".

Fair baselines: PyTorch here runs its GEMMs in OpenBLAS, whose thread count
is fixed when the library loads, so every measurement runs in a fresh
subprocess with OPENBLAS_NUM_THREADS (and OMP_NUM_THREADS) set before torch
is imported, and OPENBLAS_CORETYPE=SkylakeX where the CPU has AVX-512
(read from /proc/cpuinfo), else Zen, so OpenBLAS does not guess. For t threads every split of the t
cores between torch's intra-op threads and BLAS threads is tried ((t, t),
(t, 1), (1, t)) and the best is reported: the best PyTorch does with t cores.

Usage (run with /usr/bin/python3, torch 1.13):
  compare_pytorch.py [--threads 1,2] [--config small|large|all]
      [--optim adam|sgd|all] [--windows N]
      PyTorch's JSON lines.
  compare_pytorch.py --run-gradflow build/bench_train [same options]
      Runs bench_train and PyTorch one after the other (never concurrently)
      and prints both sets of lines plus, per config, the ratio
      gradflow samples/s / PyTorch samples/s.
"""
import argparse
import json
import os
import subprocess
import sys
import time

CONFIGS = {
    "small": ("784-256-256-10", [784, 256, 256, 10], 64),
    "large": ("784-1024-1024-10", [784, 1024, 1024, 10], 256),
}


def worker(config, torch_threads, blas_threads, windows, optim):
    """One measurement in this process; the BLAS env vars are already set."""
    import torch
    import torch.nn.functional as F

    name, sizes, bs = CONFIGS[config]
    torch.set_num_threads(torch_threads)
    torch.manual_seed(1)
    layers = []
    for i in range(len(sizes) - 1):
        layers.append(torch.nn.Linear(sizes[i], sizes[i + 1]))
        if i < len(sizes) - 2:
            layers.append(torch.nn.ReLU())
    model = torch.nn.Sequential(*layers)
    if optim == "sgd":
        opt = torch.optim.SGD(model.parameters(), lr=1e-2)
    else:
        opt = torch.optim.Adam(model.parameters(), lr=1e-3, betas=(0.9, 0.999), eps=1e-8)
    x = torch.randn(bs, sizes[0])
    y = torch.tensor([(i * 7 + 3) % sizes[-1] for i in range(bs)], dtype=torch.int64)

    def step():
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        return loss.item()

    t_warm = time.perf_counter() + 0.2
    i = 0
    while i < 5 or time.perf_counter() < t_warm:
        step()
        i += 1
    best = float("inf")
    for _ in range(windows):
        steps = 0
        t0 = time.perf_counter()
        t_end = t0 + 0.3
        while steps < 5 or time.perf_counter() < t_end:
            step()
            steps += 1
        best = min(best, (time.perf_counter() - t0) / steps)
    return {
        "bench": "train", "impl": "pytorch", "model": name, "batch": bs, "optim": optim,
        "threads": max(torch_threads, blas_threads), "deterministic": False,
        "ms_per_step": round(best * 1e3, 4), "samples_per_s": round(bs / best, 1),
        "torch_threads": torch_threads, "blas_threads": blas_threads,
        "torch_version": torch.__version__,
    }


def has_avx512():
    try:
        with open("/proc/cpuinfo") as f:
            return " avx512f" in f.read()
    except OSError:
        return False


def spawn(config, torch_threads, blas_threads, windows, optim):
    env = dict(os.environ)
    env["OPENBLAS_NUM_THREADS"] = str(blas_threads)
    env["OMP_NUM_THREADS"] = str(torch_threads)
    env["OPENBLAS_CORETYPE"] = "SkylakeX" if has_avx512() else "Zen"
    out = subprocess.run(
        [sys.executable, os.path.abspath(__file__), "--worker", config,
         str(torch_threads), str(blas_threads), "--windows", str(windows), "--optim", optim],
        env=env, check=True, stdout=subprocess.PIPE, universal_newlines=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def pytorch_best(config, t, windows, optim):
    """The best (torch threads, BLAS threads) split of t cores."""
    splits = [(t, t)] if t == 1 else [(t, t), (t, 1), (1, t)]
    runs = [spawn(config, a, b, windows, optim) for a, b in splits]
    best = max(runs, key=lambda r: r["samples_per_s"])
    best["threads"] = t
    best["splits_tried"] = [[r["torch_threads"], r["blas_threads"], r["samples_per_s"]]
                            for r in runs]
    return best


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--config", default="all", choices=["small", "large", "all"])
    ap.add_argument("--windows", type=int, default=5)
    ap.add_argument("--optim", default="adam", choices=["adam", "sgd", "all"])
    ap.add_argument("--run-gradflow", metavar="PATH_TO_bench_train")
    ap.add_argument("--worker", nargs=3, metavar=("CONFIG", "TORCH_THREADS", "BLAS_THREADS"),
                    help=argparse.SUPPRESS)
    a = ap.parse_args()

    if a.worker:
        print(json.dumps(worker(a.worker[0], int(a.worker[1]), int(a.worker[2]), a.windows,
                                a.optim)))
        return 0

    threads = [int(t) for t in a.threads.split(",") if t]
    configs = ["small", "large"] if a.config == "all" else [a.config]
    optims = ["adam", "sgd"] if a.optim == "all" else [a.optim]

    ours = {}
    if a.run_gradflow:
        out = subprocess.run(
            [a.run_gradflow, "--threads", a.threads, "--config", a.config,
             "--optim", a.optim, "--windows", str(a.windows)],
            check=True, stdout=subprocess.PIPE, universal_newlines=True).stdout
        for line in out.splitlines():
            if line.startswith("{"):
                r = json.loads(line)
                print(line, flush=True)
                ours[(r["model"], r["batch"], r["optim"], r["threads"])] = r

    theirs = {}
    for c in configs:
        for o in optims:
            for t in threads:
                r = pytorch_best(c, t, a.windows, o)
                print(json.dumps(r), flush=True)
                theirs[(r["model"], r["batch"], o, t)] = r

    for key, g in ours.items():
        p = theirs.get(key)
        if not p:
            continue
        print(json.dumps({
            "bench": "train_ratio", "model": key[0], "batch": key[1], "optim": key[2],
            "threads": key[3],
            "gradflow_samples_per_s": g["samples_per_s"],
            "pytorch_samples_per_s": p["samples_per_s"],
            "ratio": round(g["samples_per_s"] / p["samples_per_s"], 3),
        }), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
