#!/usr/bin/env python3
"""overhead_pytorch.py - the PyTorch side of bench_overhead.c: the same
100-op elementwise chain on a 4-element f32 tensor (mul_scalar, add_scalar,
tanh, mul of two chain values), sum, backward; torch.set_num_threads(1).
Prints the same JSON fields as bench_overhead (impl "pytorch", mode "eager":
PyTorch is always eager). fwd_ops = 101 (100 chain ops + the sum); the time
includes backward. Best of BENCH_REPS (default 7) batches of ~0.1 s.
"""
import json
import os
import time

import torch

CHAIN = 100
FWD_OPS = CHAIN + 1


def one_iter(x0):
    x = y = x0
    for i in range(CHAIN):
        prev = x
        m = i % 4
        if m == 0:
            x = x * 0.5
        elif m == 1:
            x = x + 0.25
        elif m == 2:
            x = torch.tanh(x)
        else:
            x = x * y
        y = prev
    loss = x.sum()
    loss.backward()
    return loss.item()


def main():
    torch.set_num_threads(1)
    reps = int(os.environ.get("BENCH_REPS", "7"))
    x0 = torch.tensor([0.1, -0.2, 0.3, 0.4], dtype=torch.float32, requires_grad=True)
    for _ in range(200):
        one_iter(x0)
    t0 = time.perf_counter()
    for _ in range(200):
        one_iter(x0)
    iters = max(50, int(0.1 / ((time.perf_counter() - t0) / 200)))
    best = float("inf")
    loss = None
    for _ in range(reps):
        t = time.perf_counter()
        for _ in range(iters):
            loss = one_iter(x0)
        best = min(best, (time.perf_counter() - t) / iters)
    print(json.dumps({
        "bench": "overhead", "impl": "pytorch", "torch": torch.__version__, "threads": 1,
        "mode": "eager", "numel": 4, "fwd_ops": FWD_OPS,
        "us_per_op": round(best * 1e6 / FWD_OPS, 3), "us_per_iter": round(best * 1e6, 2),
        "loss": round(loss, 6), "iters": iters, "reps": reps}), flush=True)


if __name__ == "__main__":
    main()
