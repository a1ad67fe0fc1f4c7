#!/usr/bin/env bash
# run_sched.sh BUILD_DIR [OUT.jsonl] - the scheduler benchmarks of
# docs/performance.md in one run, one after the other (never concurrently),
# JSON lines to OUT (default: stdout): training (1 and 2 threads, both
# models, Adam and SGD, pool and OpenMP backends) with PyTorch's best split
# and libtorch C++ beside it; serving (1, 2, 4 request threads, batch 1 and
# 64) with libtorch; the branches DAG lazy and eager; the GEMM against
# OpenBLAS; and training while another process keeps one core busy.
# Build: cmake -S . -B BUILD -DCMAKE_BUILD_TYPE=Release -DGF_BUILD_TESTS=OFF
#        && cmake --build BUILD -j2
set -euo pipefail
b=${1:?usage: run_sched.sh BUILD_DIR [OUT.jsonl]}
out=${2:-/dev/stdout}
here=$(cd "$(dirname "$0")" && pwd)
core=Zen
grep -q ' avx512f' /proc/cpuinfo && core=SkylakeX
{
  echo "{\"bench\":\"machine\",\"cpu\":\"$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')\",\"cores\":$(nproc),\"date\":\"$(date -u +%F)\",\"commit\":\"$(git -C "$here" rev-parse --short HEAD)\"}"
  for io in pool openmp; do
    "$b/bench_train" --threads 1,2 --config all --optim all --intraop "$io" --windows 3
  done
  if [ -x /usr/bin/python3 ] && /usr/bin/python3 -c 'import torch' 2>/dev/null; then
    /usr/bin/python3 "$here/compare_pytorch.py" --threads 1,2 --config all --optim all --windows 3
  fi
  if [ -x "$b/bench_torch" ]; then
    # every (torch threads, OpenBLAS threads) split of 1 and 2 cores
    for split in "1 1" "2 2" "2 1" "1 2"; do
      set -- $split
      OPENBLAS_CORETYPE=$core OPENBLAS_NUM_THREADS=$2 OMP_NUM_THREADS=$1 \
        "$b/bench_torch" train --threads "$1"
    done
    OPENBLAS_CORETYPE=$core OPENBLAS_NUM_THREADS=1 "$b/bench_torch" serve --seconds 1
  fi
  for io in pool openmp; do "$b/bench_serve" --threads 1,2,4 --batch 1,64 --intraop "$io"; done
  GF_INTRAOP=pool BENCH_REPS=4 "$b/bench_branches"
  GF_INTRAOP=openmp BENCH_REPS=4 "$b/bench_branches"
  OPENBLAS_CORETYPE=$core "$b/bench_gemm" 3
  # Interference: one core kept busy by another process.
  /usr/bin/python3 -c 'import time; t=time.time()+120
while time.time() < t: pass' &
  hog=$!
  sleep 0.5
  for io in pool openmp; do
    "$b/bench_train" --threads 1,2 --config all --optim adam --intraop "$io" --windows 3 |
      sed 's/"bench":"train"/"bench":"train_busy_core"/'
  done
  kill "$hog" 2>/dev/null || true
} > "$out"
