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
