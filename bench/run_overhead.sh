#!/bin/sh
# run_overhead.sh - bench_overhead (gradflow) and overhead_pytorch.py
# (PyTorch 1.13, 1 thread) alternated ROUNDS times (default 3) so both see
# the same machine noise; prints every run's JSON line, then one summary line
# per gradflow config with the best of the rounds and the ratio
# pytorch_us_per_op / gradflow_us_per_op (> 1: gradflow has less overhead).
# Usage: bench/run_overhead.sh [build-dir]   (default build-bench)
set -e
cd "$(dirname "$0")/.."
B=${1:-build-bench}
R=${ROUNDS:-3}
tmp=$(mktemp)
i=0
while [ "$i" -lt "$R" ]; do
    "$B/bench_overhead" | tee -a "$tmp"
    /usr/bin/python3 bench/overhead_pytorch.py | tee -a "$tmp"
    i=$((i + 1))
done
/usr/bin/python3 - "$tmp" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")]
pt = min(r["us_per_op"] for r in rows if r["impl"] == "pytorch")
best = {}
for r in rows:
    if r["impl"] != "gradflow":
        continue
    k = (r["threads"], r["mode"])
    best[k] = min(best.get(k, 1e30), r["us_per_op"])
for (t, m), v in sorted(best.items()):
    print(json.dumps({"bench": "overhead_summary", "threads": t, "mode": m,
                      "gradflow_us_per_op": v, "pytorch_us_per_op": pt,
                      "pytorch_over_gradflow": round(pt / v, 2)}))
PY
rm -f "$tmp"
