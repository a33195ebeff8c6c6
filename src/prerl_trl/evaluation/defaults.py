"""The evaluation protocol's defaults (the paper's), the files an evaluation writes, and the verifiers it can use."""

from __future__ import annotations

DEFAULT_N = 32
DEFAULT_TEMPERATURE = 1.0
DEFAULT_TOP_P = 1.0
DEFAULT_MAX_TOKENS = 8192
CACHE_FILE = "generations.jsonl"
SETTINGS_FILE = "settings.json"
RESULTS_FILE = "results.json"
PLOT_FILE = "pass_at_k.png"
LOCAL_SUFFIXES = (".json", ".jsonl", ".parquet")
#: Answer checks `--verifier` can name (reward functions of `prerl_trl.rewards`); not a cache key.
VERIFIERS = ("math_accuracy", "math_string_match")
# Settings that change what a cached generation means: a cache made with other values is not reused.
CACHE_KEY_SETTINGS = ("model", "temperature", "top_p", "max_tokens")


class EvaluationError(ValueError):
    """Bad input to the evaluation: unknown dataset, missing column, incompatible cache, ..."""

