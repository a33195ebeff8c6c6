"""Figures in the READMEs that come from committed JSON results are checked against that JSON, not copied by hand."""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # benchmarks/ lives at the repository root

from benchmarks.real_model.report import alignment_table  # noqa: E402

REAL = ROOT / "benchmarks" / "real_model"


def test_real_model_alignment_table_is_the_json():
    assert alignment_table() in (REAL / "README.md").read_text()


def test_real_model_cpu_interval_is_the_json():
    paired = json.loads((REAL / "results" / "cpu" / "results.json").read_text())["paired_dsrl_vs_grpo"]["8"]
    text = (REAL / "README.md").read_text()
    assert f"interval ({paired['low']:+.3f} to {paired['high']:+.3f})" in text
    assert f"**{paired['mean']:+.3f} ± {paired['half_width']:.3f}**" in text
    per_seed = ", ".join(f"{v:+.3f}" for v in paired["values"])
    assert f"DSRL - GRPO: {per_seed}" in text
