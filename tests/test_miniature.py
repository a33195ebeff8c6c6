"""Smoke test of the miniature benchmark (benchmarks/miniature): a few pretraining steps and 2 RL steps per method.

It checks that the pipeline runs end to end and writes its outputs; the real numbers live in the benchmark."""

from __future__ import annotations

import json
import math
import random
import sys
from dataclasses import replace
from pathlib import Path

import pytest

pytest.importorskip("matplotlib")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root, where benchmarks/ lives

from benchmarks.miniature import task  # noqa: E402
from benchmarks.miniature.presets import get_preset  # noqa: E402
from benchmarks.miniature.rl import METHODS  # noqa: E402
from benchmarks.miniature.run import compare  # noqa: E402


def test_task_solutions_and_reward():
    rng = random.Random(0)
    problem = task.Problem(7, (("+", 5), ("*", 3), ("-", 4)))
    assert problem.answer == "32"  # left to right: (7 + 5) * 3 - 4, computed by hand
    right = task.solution(problem, "correct", rng)
    assert right == "7+5=12. 12*3=36. 36-4=32. \\boxed{32}"
    assert task.exact_match_reward([right, right.replace("{32}", "{31}"), "no box"], ["32"] * 3) == [1.0, 0.0, 0.0]
    for _ in range(20):  # a wrong solution's box never holds the answer; the reflective styles end right
        assert task.boxed_answer(task.solution(problem, "wrong", rng)) != "32"
        for style in ("reflect_fix", "switch_fix", "double_check"):
            assert task.boxed_answer(task.solution(problem, style, rng)) == "32"


def test_splits_are_disjoint():
    data = task.splits(3, num_pretrain=300, num_rl=50, num_val=20, num_test=20, seed=0)
    held_out = {p.question for name in ("val", "test") for p in data[name]}
    assert len(held_out) == 40
    assert not held_out & {p.question for p in data["pretrain"] + data["rl"]}
    for p in data["pretrain"]:
        value = p.start
        for op, n in p.steps:
            value = {"+": value + n, "-": value - n, "*": value * n}[op]
            assert 0 <= value <= task.MAX_VALUE


def test_pipeline_writes_outputs(tmp_path):
    out, cache = tmp_path / "out", tmp_path / "cache"
    preset = get_preset("smoke")
    results = compare(preset, out, cache, learning_rates={"nsr_prerl": 5e-4})  # the per-method rule, for one method
    written = json.loads((out / "results.json").read_text())
    assert (out / "miniature.png").stat().st_size > 1000
    assert set(written["runs"]) == set(METHODS)
    k = written["settings"]["rl"]["eval_k"]
    for method in METHODS:
        curve = written["runs"][method]["1"]["eval"]
        assert [p["step"] for p in curve] == [0, 2]  # the base, then every 2 steps
        for point in curve:
            assert 0.0 <= point[f"avg@{k}"] <= point["pass@k"][str(k)] <= 1.0
            # Per-problem correct counts are saved (for the bootstrap over problems) and give avg@k back.
            assert len(point["correct"]) == preset.num_test
            assert point[f"avg@{k}"] == pytest.approx(sum(point["correct"]) / (k * preset.num_test))
        train_log = written["runs"][method]["1"]["train"]
        assert len(train_log) == 2
        # The optimizer ran at the method's own learning rate where one was given, else at the preset's.
        expected = 5e-4 if method == "nsr_prerl" else preset.rl.learning_rate
        assert [e["learning_rate"] for e in train_log] == pytest.approx([expected] * 2)
    assert written["gradient_alignment_base"]["num_pairs"] == 4
    assert math.isfinite(written["gradient_alignment_base"]["cosine_mean"])
    assert results["summary"]["base"][f"avg@{k}"]["values"] == [written["runs"]["grpo"]["1"]["eval"][0][f"avg@{k}"]]
    # The base checkpoint is cached: a second pretraining call reuses it.
    assert len(list(cache.glob("base-*/pretrain.json"))) == 1


def test_corpus_with_standalone_solutions():
    problems = task.splits(3, num_pretrain=2000, num_rl=1, num_val=1, num_test=1, seed=0)["pretrain"]
    plain, mixed = task.corpus(problems, 0), task.corpus(problems, 0, standalone_share=0.3)
    assert all(doc.startswith(p.prompt + " ") for doc, p in zip(plain, problems, strict=True))
    standalone = [(doc, p) for doc, p in zip(mixed, problems, strict=True) if not doc.startswith(p.prompt)]
    # 600 expected of 2000; 5 binomial standard deviations (about 20 documents each) either side.
    assert 500 < len(standalone) < 700
    for doc, p in standalone:
        # BOS, then exactly what a rollout after the prompt's "A:" is: a space, the worked solution, EOS.
        assert doc.startswith(task.BOS + " " + str(p.start)) and doc.endswith(task.EOS) and "Q:" not in doc
        assert task.boxed_answer(doc) is not None
    with pytest.raises(ValueError, match="standalone_share"):
        task.corpus(problems, 0, standalone_share=1.0)


def test_t_critical_matches_published_tables():
    from benchmarks.miniature.stats import mean_interval, t_critical

    # Two-sided 95% critical values of Student's t, from the standard printed tables.
    for df, value in {1: 12.706, 2: 4.303, 4: 2.776, 9: 2.262, 19: 2.093, 30: 2.042}.items():
        assert t_critical(df) == pytest.approx(value, abs=1e-3)
    ci = mean_interval([0.1, 0.3, 0.2])
    assert ci["sd"] == pytest.approx(0.1)  # sample std (ddof=1) of 0.1, 0.2, 0.3
    assert ci["half_width"] == pytest.approx(4.303 * 0.1 / math.sqrt(3), rel=1e-3)


def test_fixed_draw_paired_statistics_ablations_and_resume(tmp_path):
    out, cache = tmp_path / "out", tmp_path / "cache"
    preset = get_preset("smoke", eval_draw="fixed", seeds=(1,))
    methods = ("grpo", "dsrl", "dsrl_switch2", "dsrl_reset")
    first = compare(preset, out, cache, methods)
    k = preset.rl.eval_k
    # Plumbing of the ablations: the switch step reaches DSRL (smoke: 2 steps, switch at 1).
    active = {m: [e["prerl/active"] for e in first["runs"][m]["1"]["train"]] for m in methods if m != "grpo"}
    assert active == {"dsrl": [1.0, 0.0], "dsrl_switch2": [1.0, 1.0], "dsrl_reset": [1.0, 0.0]}
    for e in first["runs"]["grpo"]["1"]["train"]:  # weight decay moves every parameter, even at a zero gradient
        assert e["update_rms"] > 0 and math.isfinite(e["adam_sqrt_v"]) and e["adam_sqrt_v"] >= 0
    # Adding a seed keeps the finished runs as they were and runs only the new seed.
    second = compare(replace(preset, seeds=(1, 2)), out, cache, methods)
    for m in methods:
        assert second["runs"][m]["1"] == json.loads(json.dumps(first["runs"][m]["1"]))
        assert set(second["runs"][m]) == {"1", "2"}
    # One fixed draw: the base is measured once, so both seeds start from the same number.
    curves = {s: second["runs"]["grpo"][s]["eval"] for s in ("1", "2")}
    assert curves["1"][0] == curves["2"][0]
    # Paired differences, recomputed by hand from the per-seed curves.
    acc = f"avg@{k}"
    diffs = [second["runs"]["dsrl"][s]["eval"][-1][acc] - curves[s][-1][acc] for s in ("1", "2")]
    paired = second["summary"]["dsrl"]["paired_vs_grpo"][str(preset.rl.steps)]
    assert paired["values"] == pytest.approx(diffs)
    assert paired["mean"] == pytest.approx(sum(diffs) / 2)
    assert paired["sd"] == pytest.approx(abs(diffs[0] - diffs[1]) / math.sqrt(2))


def test_equal_updates_pairs_method_at_t_with_control_at_t_minus_shift():
    from benchmarks.miniature.stats import equal_updates

    dsrl = {"1": {0: 0.30, 5: 0.20, 10: 0.40, 15: 0.50}, "2": {0: 0.30, 5: 0.25, 10: 0.35, 15: 0.55}}
    grpo = {"1": {0: 0.30, 5: 0.32, 10: 0.45}, "2": {0: 0.30, 5: 0.36, 10: 0.40}, "3": {0: 0.30, 5: 0.9, 10: 0.9}}
    out = equal_updates(dsrl, grpo, shift=5)
    # By hand: step 10 pairs DSRL@10 with GRPO@5: 0.40 - 0.32 = 0.08 and 0.35 - 0.36 = -0.01 (seed 3 has no DSRL run).
    assert out["10"]["control_step"] == 5
    assert out["10"]["values"] == pytest.approx([0.08, -0.01])
    assert out["10"]["mean"] == pytest.approx(0.035)
    assert out["10"]["sd"] == pytest.approx(0.09 / math.sqrt(2))
    assert out["15"]["values"] == pytest.approx([0.05, 0.15])  # DSRL@15 - GRPO@10
    assert out["5"]["values"] == pytest.approx([-0.10, -0.05])  # DSRL@5 - GRPO@0, the base
    assert set(out) == {"5", "10", "15"}  # DSRL@0 has no GRPO@-5


def test_steps_to_gain_interpolates_the_first_crossing():
    from benchmarks.miniature.stats import first_crossing, steps_to_gain

    steps, values = [0, 10, 20, 40], [0.30, 0.34, 0.40, 0.38]
    # Base 0.30, final gain 0.10: 50% is 0.35, crossed between step 10 (0.34) and 20 (0.40): 10 + 10 * 0.01 / 0.06.
    out = steps_to_gain(steps, values, base=0.30, final_gain=0.10)
    assert out["0.5"]["level"] == pytest.approx(0.35)
    assert out["0.5"]["first_evaluated_step"] == 20
    assert out["0.5"]["interpolated_step"] == pytest.approx(10 + 10 / 6)
    # 90% is 0.39: between 10 (0.34) and 20 (0.40), 10 + 10 * 0.05 / 0.06.
    assert out["0.9"]["interpolated_step"] == pytest.approx(10 + 50 / 6)
    assert first_crossing(steps, values, 0.41) is None
    assert first_crossing(steps, values, 0.2) == 0.0
    assert steps_to_gain(steps, values, base=0.30, final_gain=-0.01)["0.5"]["interpolated_step"] is None


def test_bootstrap_over_runs_and_problems():
    from benchmarks.miniature.stats import bootstrap_paired

    # Every difference equal: every replicate gives it, so the interval is that value.
    same = bootstrap_paired({"a": [3, 5], "b": [4, 4]}, {"a": [1, 3], "b": [2, 2]}, {"a": "0", "b": "0"}, scale=16,
                            num_resamples=500)
    assert same["mean"] == pytest.approx(2 / 16) and same["low"] == pytest.approx(2 / 16)
    assert same["high"] == pytest.approx(2 / 16)
    # Runs resampled within their stratum: base 0's runs differ by 0.1, base 1's by 0.3, each constant over problems.
    # Each replicate keeps two runs of each base, so its mean is always 0.2, where an unstratified draw would vary.
    method = {"0/1": [0.1, 0.1], "0/2": [0.1, 0.1], "1/1": [0.3, 0.3], "1/2": [0.3, 0.3]}
    control = {key: [0.0, 0.0] for key in method}
    strata = {key: key.split("/")[0] for key in method}
    both = bootstrap_paired(method, control, strata, num_resamples=500)
    assert both["low"] == pytest.approx(0.2) and both["high"] == pytest.approx(0.2)
    # One run, problems only: the bootstrap sd of a mean of Q values is the population sd / sqrt(Q) (the plug-in
    # standard error), computed here by hand.
    diffs = [0.0, 1.0, 0.0, 0.0, 2.0, 1.0, 0.0, 0.0]
    mean = sum(diffs) / len(diffs)
    plug_in_se = math.sqrt(sum((d - mean) ** 2 for d in diffs) / len(diffs)) / math.sqrt(len(diffs))
    one = bootstrap_paired({"1": diffs}, {"1": [0.0] * len(diffs)}, {"1": "0"}, num_resamples=40_000)
    assert one["mean"] == pytest.approx(0.5)
    assert one["sd"] == pytest.approx(plug_in_se, rel=0.03)
    assert one["low"] < 0.5 < one["high"]


def test_v3_analysis_against_hand_computation():
    from benchmarks.miniature.v3 import analyse

    def results(curves: dict[str, dict[str, list[float]]]) -> dict:
        """A results.json with evaluations at steps 0, 3, 6, 9 (switch at 3), 4 problems x 4 samples: each avg@4
        value v is spread as correct counts [4v, 4v, 4v, 4v] (v a multiple of 0.25)."""
        point = lambda t, v: {"step": t, "avg@4": v, "correct": [round(4 * v)] * 4}  # noqa: E731
        runs = {m: {seed: {"eval": [point(t, v) for t, v in zip((0, 3, 6, 9), c, strict=True)]}
                    for seed, c in by_seed.items()} for m, by_seed in curves.items()}
        alignment = {"num_pairs": 2, "cosine_mean": 0.5, "negative_frac": 0.0, "logp_conditional_per_token": -0.1,
                     "logp_marginal_per_token": -0.5}
        return {"complete": True, "settings": {"rl": {"eval_k": 4, "steps": 9, "dsrl_switch_step": 3}}, "runs": runs,
                "gradient_alignment_base": alignment, "pretrain": {"final_loss": 0.4}}

    base0 = results({"grpo": {"1": [0.25, 0.5, 0.75, 0.75], "2": [0.25, 0.25, 0.5, 0.75]},
                     "dsrl": {"1": [0.25, 0.0, 0.5, 0.5], "2": [0.25, 0.25, 0.5, 0.75]}})
    base1 = results({"grpo": {"1": [0.5, 0.5, 0.75, 1.0], "2": [0.5, 0.75, 0.75, 1.0]},
                     "dsrl": {"1": [0.5, 0.25, 0.75, 1.0], "2": [0.5, 0.5, 0.5, 0.75]}})
    analysis = analyse({"0": base0, "1": base1})
    assert analysis["base_models"]["1"]["avg@16"] == pytest.approx(0.5)  # the step-0 value of base 1's runs
    out = analysis["scopes"]
    # End (step 9), DSRL - GRPO by run: base 0: -0.25, 0; base 1: 0, -0.25.
    assert out["base 0"]["decisive"]["values"] == pytest.approx([-0.25, 0.0])
    pooled = out["pooled"]["decisive"]
    assert pooled["n"] == 4 and pooled["mean"] == pytest.approx(-0.125)
    assert pooled["sd"] == pytest.approx(math.sqrt(4 * 0.125**2 / 3))
    assert pooled["half_width"] == pytest.approx(3.182 * pooled["sd"] / 2, rel=1e-3)  # t(3) = 3.182, tables
    assert out["pooled"]["bootstrap"]["mean"] == pytest.approx(-0.125)
    # Equal GRPO updates: DSRL@9 - GRPO@6: base 0: 0.5 - 0.75, 0.75 - 0.5; base 1: 1.0 - 0.75, 0.75 - 0.75.
    assert out["pooled"]["equal_updates"]["9"]["values"] == pytest.approx([-0.25, 0.25, 0.25, 0.0])
    # Last third (9 - 9 // 3 = step 6): GRPO@9 - GRPO@6 by run: 0, 0.25, 0.25, 0.25.
    assert out["pooled"]["last_third"]["grpo"]["values"] == pytest.approx([0.0, 0.25, 0.25, 0.25])
    # Speed on base 0's seed-mean curves: base 0.25, GRPO 0.25, 0.375, 0.625, 0.75: gain 0.5, 50% level 0.5, crossed
    # between step 3 (0.375) and 6 (0.625) at 4.5; DSRL 0.25, 0.125, 0.5, 0.625 reaches 0.5 at step 6.
    speed = out["base 0"]["speed"]
    assert out["base 0"]["grpo_final_gain"] == pytest.approx(0.5)
    assert speed["grpo"]["0.5"]["interpolated_step"] == pytest.approx(4.5)
    assert speed["dsrl"]["0.5"]["interpolated_step"] == pytest.approx(6.0)
    assert speed["dsrl"]["0.9"]["interpolated_step"] is None  # 0.7 > DSRL's 0.625


def test_readme_v3_tables_match_the_json():
    """Every line of the v3 tables in benchmarks/miniature/README.md is what `python -m benchmarks.miniature.v3`
    prints from the committed results.json files (no hand copies)."""
    from benchmarks.miniature.v3 import analyse, first_runs, load, tables

    root = Path(__file__).resolve().parents[1] / "benchmarks" / "miniature"
    bases = load(root / "results" / "cpu-v3")
    if not bases:
        pytest.skip("no committed v3 results")
    readme = (root / "README.md").read_text()
    missing = [line for line in tables(analyse(bases)).splitlines() if line.strip() and line not in readme]
    assert not missing, missing
    # the first call's 7 runs, as reported before the extension
    missing = [line for line in tables(analyse(first_runs(bases, 7))).splitlines() if line.strip() and line not in readme]
    assert not missing, missing


def test_first_runs_follow_the_protocols_order_and_need_both_arms():
    from benchmarks.miniature.v3 import first_runs

    def base(grpo, dsrl):
        return {"runs": {"grpo": {s: {"s": s} for s in grpo}, "dsrl": {s: {"s": s} for s in dsrl}}}

    bases = {"0": base(["1", "2", "3"], ["1", "2", "3"]), "1": base(["1", "2", "3"], ["1", "3"])}  # base 1 seed 2: no DSRL
    # order: 0/1, 1/1, 0/2, (1/2 unfinished), 0/3, 1/3
    kept = first_runs(bases, 4)
    assert sorted(kept["0"]["runs"]["grpo"]) == ["1", "2", "3"] and sorted(kept["0"]["runs"]["dsrl"]) == ["1", "2", "3"]
    assert sorted(kept["1"]["runs"]["grpo"]) == ["1"] and sorted(kept["1"]["runs"]["dsrl"]) == ["1"]
    assert sorted(first_runs(bases, 5)["1"]["runs"]["dsrl"]) == ["1", "3"]
