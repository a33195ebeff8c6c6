# shellcheck shell=bash
# Sourced by the GPU scripts (gpu_check.sh, miniature/gpu.sh) from the repository root: on an offline machine whose
# Python lacks trl / datasets / math-verify / deepspeed, install the wheels carried in a git-ignored .whl/ (see
# benchmarks/README.md) into /tmp with --no-index, and put them, src/ and benchmarks/ on PYTHONPATH.
# Set PRERL_NO_WHEELS=1 to skip the wheels (the CPU dry-runs do). Installs with the caller's $python.
: "${python:?set python before sourcing gpu_env.sh}"
if [ -d .whl ] && [ -z "${PRERL_NO_WHEELS:-}" ] && ls .whl/*.whl >/dev/null 2>&1; then
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
