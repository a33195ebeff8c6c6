#!/usr/bin/env bash
# One command for a GPU machine: real steps of every trainer on CUDA in bf16 (Qwen2.5-0.5B shape, random weights), the
# loss-phase benchmark (prompt 128, completion 1024), gradient alignment, DeepSpeed ZeRO-3 across the DSRL switch with
# save_model, and vLLM colocate when vLLM is importable. Writes $OUT/gpu_check.json (or ./gpu_check_out/). Under 8
# minutes on one H100-class GPU; safe to rerun.
#
#   bash benchmarks/gpu_check.sh           # on the GPU machine, from the repository root
#   bash benchmarks/gpu_check.sh --cpu     # dry-run on the CPU with a tiny model (the test suite runs this)
#   PYTHON=.venv/bin/python bash benchmarks/gpu_check.sh --cpu --sections train_steps,loss_phase
#
# An offline machine without trl / datasets / math-verify / deepspeed: download their wheels into a git-ignored .whl/
# first (see benchmarks/README.md); they are installed from there with --no-index when .whl/ exists.
set -euo pipefail
cd "$(dirname "$0")/.."
out="${OUT:-gpu_check_out}"

if [ "${1:-}" = "--cpu" ]; then export PRERL_NO_WHEELS=1; fi
python="${PYTHON:-python3}"
# shellcheck source=/dev/null
. benchmarks/gpu_env.sh
exec "$python" benchmarks/gpu_check.py --out "$out" "$@"
