#!/usr/bin/env bash
# The miniature's `gpu` preset on one GPU machine, from the repository root: pretraining, the learning-rate sweep and
# the comparison, one after the other. The results (results.json, sweep.json, miniature.png when matplotlib is there)
# go to $OUT/miniature-gpu when $OUT is set (the device tool's output folder), else benchmarks/miniature/results/gpu.
#
#   bash benchmarks/miniature/gpu.sh                 # the whole preset
#   bash benchmarks/miniature/gpu.sh --steps 20      # any `python -m benchmarks.miniature` option, passed to both
#
# An offline machine without trl / datasets: carry their wheels in .whl/ (benchmarks/README.md), as for gpu_check.sh.
set -euo pipefail
cd "$(dirname "$0")/../.."
python="${PYTHON:-python3}"
# shellcheck source=/dev/null
. benchmarks/gpu_env.sh
if [ -n "${OUT:-}" ]; then out="$OUT/miniature-gpu"; else out=benchmarks/miniature/results/gpu; fi
start=$(date +%s)
"$python" -m benchmarks.miniature sweep --preset gpu --output-dir "$out" "$@"
"$python" -m benchmarks.miniature run --preset gpu --output-dir "$out" "$@"
echo "[miniature] gpu preset: $(( $(date +%s) - start )) s in all (pretraining, sweep and comparison)"
