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
python="${PYTHON:-python3}"

if [ -d .whl ] && [ "${1:-}" != "--cpu" ] && ls .whl/*.whl >/dev/null 2>&1; then
  site=/tmp/prerl-gpu-site
  if [ ! -f "$site/.installed" ]; then
    "$python" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$site" .whl/*.whl
    touch "$site/.installed"
  fi
  # Some images fail to pickle pyarrow's MonthDayNano while datasets fingerprints a table: fall back to a random
  # fingerprint there (it only names cache entries; the data is unchanged).
  cat > "$site/sitecustomize.py" <<'PY'
try:
  import datasets.fingerprint as _fingerprint

  _original_hash = _fingerprint.Hasher.hash.__func__

  def _hash_or_random(cls, value):
      try:
          return _original_hash(cls, value)
      except Exception:
          return _fingerprint.generate_random_fingerprint()

  _fingerprint.Hasher.hash = classmethod(_hash_or_random)
except Exception:
  pass
PY
  export PYTHONPATH="$site:${PYTHONPATH:-}"
fi
export PYTHONPATH="$PWD/src:$PWD/benchmarks:${PYTHONPATH:-}" HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false PYTHONUNBUFFERED=1
exec "$python" benchmarks/gpu_check.py --out "$out" "$@"
