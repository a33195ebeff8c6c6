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


def _summary() -> str:
    text = (ROOT / "README.md").read_text()
    return text[text.index("## Does it learn?"):text.index("## Train in a few lines")]


def test_top_level_summary_figures_are_the_json():
    from benchmarks.miniature.stats import paired_differences

    text = " ".join(_summary().split())
    v3 = json.loads((ROOT / "benchmarks/miniature/results/cpu-v3/analysis.json").read_text())["scopes"]["pooled"]
    decisive, boot = v3["decisive"], v3["bootstrap"]
    assert f"**{decisive['mean']:+.3f} ± {decisive['half_width']:.3f}**" in text
    assert f"({decisive['n']} runs over 2 bases; bootstrap over runs and problems {boot['low']:+.3f} to {boot['high']:+.3f})" in text
    assert f"interval ({decisive['low']:+.3f} to {decisive['high']:+.3f})" in text
    at90, warm = v3["equal_updates"]["90"], v3["equal_updates"]["5"]
    assert f"GRPO@85): {at90['mean']:+.3f} ± {at90['half_width']:.3f}" in text
    assert f"cost {-warm['mean']:.3f} ± {warm['half_width']:.3f} against the base" in text
    speed = {m: [round(v3["speed"][m][q]["interpolated_step"]) for q in ("0.5", "0.9")] for m in ("grpo", "dsrl")}
    assert (f"at steps {speed['grpo'][0]} and {speed['grpo'][1]}, DSRL at {speed['dsrl'][0]} and {speed['dsrl'][1]}"
            in text)

    v2 = json.loads((ROOT / "benchmarks/miniature/results/cpu-v2/results.json").read_text())["runs"]

    def at(method, step):
        return {seed: next(p["avg@16"] for p in run["eval"] if p["step"] == step) for seed, run in v2[method].items()}

    end, equal = paired_differences(at("dsrl", 30), at("grpo", 30)), paired_differences(at("dsrl", 30), at("grpo", 20))
    assert f"DSRL - GRPO = {end['mean']:+.3f} ± {end['half_width']:.3f} at step 30 ({end['n']} seeds)" in text
    assert f"DSRL@30 - GRPO@20 = {equal['mean']:+.3f} ± {equal['half_width']:.3f}" in text
    grpo0, grpo30 = at("grpo", 0), at("grpo", 30)
    mean = lambda d: sum(d.values()) / len(d)  # noqa: E731
    assert f"from {mean(grpo0):.2f} to {mean(grpo30):.2f}" in text

    contexts = json.loads((REAL / "results/gpu-v2/alignment.json").read_text())["contexts"]
    token, history = contexts["token"], contexts["chat_frame_history"]
    assert (f"(cosine {token['cosine_mean']:.2f} with log P(y|x), {token['negative_frac']:.0%} of pairs negative, "
            f"{token['num_pairs']} pairs)") in text
    assert f"the cosine is {history['cosine_mean']:.2f}" in text and history["negative_frac"] == 0

    from benchmarks.real_model.report import analyse_comparison

    real = analyse_comparison(json.loads((REAL / "results/gpu-v3/results.json").read_text()))
    decisive, boot, equal = real["decisive"], real["bootstrap"], real["equal_updates"]
    assert f"{decisive['n']} seeds (one H200 lease)" in text
    assert f"at step 24 is **{decisive['mean']:+.3f} ± {decisive['half_width']:.3f}** avg@8" in text
    assert f"bootstrap over seeds and problems {boot['low']:+.3f} to {boot['high']:+.3f})" in text
    assert f"{equal['24']['mean']:+.3f} ± {equal['24']['half_width']:.3f} at equal numbers" in text
    assert f"base's ({equal['2']['mean']:+.3f} ± {equal['2']['half_width']:.3f})" in text
    assert f"real model's ({decisive['low']:+.3f} to {decisive['high']:+.3f})" in text


def test_real_model_v3_tables_are_the_json():
    from benchmarks.real_model.report import analyse_comparison, comparison_tables

    results = json.loads((REAL / "results" / "gpu-v3" / "results.json").read_text())
    assert comparison_tables(analyse_comparison(results)) in (REAL / "README.md").read_text()


def test_h200_loss_phase_table_is_the_json():
    results = json.loads((ROOT / "benchmarks/results/loss_phase_h200.json").read_text())["results"]
    text = (ROOT / "benchmarks/README.md").read_text()
    section = text[text.index("**GPU**, NVIDIA H200"):text.index("**CPU**, 2 idle cores")]
    labels = {"grpo": "GRPO", "prerl_all": "PreRL-all", "nsr_prerl": "NSR-PreRL", "joint": "joint (`rl_loss_coef=1`)",
              "dsrl_after_switch": "DSRL after the switch", "nsr_prerl_frame": "NSR-PreRL, 148-token frame"}
    for key, label in labels.items():
        r = results[key]
        row = (f"| {label} | {r['rows_in_loss']} | {r['loss_backward_median_s']:.3f} s | {r['time_ratio_vs_grpo']:.2f} | "
               f"{r['peak_bytes'] / 2**30:.1f} GiB | {r['peak_ratio_vs_grpo']:.2f} |")
        assert row in section, row
