#!/bin/sh
# run_scaling.sh - thread scaling of the engine on a machine with more cores:
# bench_sched (ns/task vs OpenMP task depend), bench_branches (64 independent
# matmul+tanh chains, speed-up over 1 thread), bench_train (MLP training
# samples/s) and bench_gemm (GFLOP/s, with BENCH_THREADS if it has OpenBLAS)
# for each thread count of THREADS (default 1,2,4,8,16; capped at the CPUs
# the process may use). JSON lines on stdout, with one "machine" line first.
# Usage: bench/run_scaling.sh [build-dir]   (default build-bench)
set -e
cd "$(dirname "$0")/.."
B=${1:-build-bench}
N=$(getconf _NPROCESSORS_ONLN)
T=${THREADS:-}
if [ -z "$T" ]; then
    T=1
    for t in 2 4 8 16 32 64; do [ "$t" -le "$N" ] && T="$T,$t"; done
fi
model=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')
flags=$(grep -m1 '^flags' /proc/cpuinfo | grep -o 'avx512f\|avx2\|fma' | sort -u | tr '\n' ' ')
printf '{"bench":"machine","cpu":"%s","online_cpus":%s,"isa_flags":"%s","threads":"%s"}\n' \
    "$model" "$N" "$flags" "$T"
BENCH_THREADS=$T BENCH_REPS=${SCHED_REPS:-5} "$B/bench_sched"
BENCH_THREADS=$T BENCH_REPS=${BRANCH_REPS:-4} "$B/bench_branches" lazy
"$B/bench_train" --threads "$T" --config all --windows "${TRAIN_WINDOWS:-3}"
if [ -x "$B/bench_gemm" ]; then BENCH_THREADS=$T "$B/bench_gemm" "${GEMM_ROUNDS:-2}"; fi
