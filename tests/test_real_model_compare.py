"""The real-model comparison's bookkeeping (benchmarks/real_model/run.py) on hand-made curves: no model is run."""

import statistics
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.real_model.run import PRESETS, paired_partial  # noqa: E402


def _curve(points: dict[int, float]) -> list[dict]:
    return [{"step": t, "avg@8": v} for t, v in points.items()]


def test_paired_partial_pairs_finished_and_unfinished_runs_at_the_steps_both_reached():
    preset = PRESETS["gpu-v3"]
    runs = {"grpo": {"1": {"eval": _curve({0: 0.10, 2: 0.12, 4: 0.20})}},
            "dsrl": {"1": {"eval": _curve({0: 0.10, 2: 0.11, 4: 0.25})}}}
    # seed 2: GRPO stopped after step 2, DSRL after step 4; seed 3: DSRL never evaluated
    partial = {"grpo": {"2": _curve({0: 0.10, 2: 0.16}), "3": _curve({0: 0.10, 2: 0.13})},
               "dsrl": {"2": _curve({0: 0.10, 2: 0.14, 4: 0.30}), "3": _curve({0: 0.10})}}
    out = paired_partial(preset, runs, partial)

    assert set(out) == {"0", "2", "4"}
    assert out["4"]["n"] == 1 and out["4"]["seeds"] == ["1"]  # seed 2's GRPO never reached step 4
    assert out["4"]["mean"] == pytest.approx(0.05)
    assert out["2"]["seeds"] == ["1", "2"]
    diffs = [0.11 - 0.12, 0.14 - 0.16]
    assert out["2"]["mean"] == pytest.approx(statistics.fmean(diffs))
    assert out["2"]["sd"] == pytest.approx(statistics.stdev(diffs))
    assert out["0"]["n"] == 3 and out["0"]["mean"] == pytest.approx(0.0)


def test_gpu_v3_measures_the_decisive_and_equal_update_steps():
    s = PRESETS["gpu-v3"].rl
    switch = s.dsrl_switch_step
    evaluated = [t for t in range(1, s.steps + 1) if s.evaluates_at(t)]
    assert s.steps >= 24 and len(PRESETS["gpu-v3"].seeds) >= 7
    assert s.steps in evaluated and s.steps - switch in evaluated  # DSRL@end against GRPO@(end - switch)
    assert switch in evaluated and 2 * switch in evaluated
    assert 0.04 <= switch / s.steps <= 0.10  # about the paper's 20 of ~350 steps


def _results(grpo: dict[str, dict[int, float]], dsrl: dict[str, dict[int, float]], partial: dict) -> dict:
    def run(curve):
        return {"eval": [{"step": t, "avg@8": v, "correct": [round(8 * v)] * 2} for t, v in curve.items()]}

    return {"settings": {"rl": {"eval_k": 8, "steps": 4, "dsrl_switch_step": 2}},
            "runs": {"grpo": {sd: run(c) for sd, c in grpo.items()}, "dsrl": {sd: run(c) for sd, c in dsrl.items()}},
            "partial": partial}


def test_learning_rate_rule_reads_edge_runs_at_the_step_they_reached():
    from benchmarks.real_model.report import analyse_comparison, comparison_tables

    grpo = {"1": {0: 0.1, 2: 0.2, 4: 0.25}, "2": {0: 0.1, 2: 0.3, 4: 0.5}, "3": {0: 0.1, 2: 0.25, 4: 0.375}}
    dsrl = {sd: {0: 0.1, 2: 0.1, 4: c[4] + 0.125} for sd, c in grpo.items()}
    at2 = [c[2] for c in grpo.values()]
    above = statistics.fmean(at2) + statistics.stdev(at2) + 0.01  # above the base rate by more than the sd
    partial = {"grpo@3e-05": {"1": [{"step": 0, "avg@8": 0.1}, {"step": 2, "avg@8": above}]}}
    a = analyse_comparison(_results(grpo, dsrl, partial))

    edge = a["edge_rates"]["grpo@3e-05"]
    assert edge["step"] == 2 and not edge["finished"]
    assert edge["grpo_mean"] == pytest.approx(statistics.fmean(at2))
    assert edge["grpo_sd"] == pytest.approx(statistics.stdev(at2))
    assert edge["above_by_more_than_sd"] and not a["keeps_rate"]
    assert a["decisive"]["mean"] == pytest.approx(0.125) and a["by_step"]["2"]["mean"] == pytest.approx(-0.15)
    assert "| 3e-05 | 2 (stopped) |" in comparison_tables(a)

    partial["grpo@3e-05"]["1"][1]["avg@8"] = statistics.fmean(at2) + statistics.stdev(at2) - 0.01
    assert analyse_comparison(_results(grpo, dsrl, partial))["keeps_rate"]


def test_decisive_test_pairs_only_seeds_finished_in_both_arms():
    from benchmarks.real_model.report import analyse_comparison

    grpo = {"1": {0: 0.1, 2: 0.2, 4: 0.25}, "2": {0: 0.1, 2: 0.3, 4: 0.5}, "3": {0: 0.1, 2: 0.25, 4: 0.375}}
    dsrl = {"1": {0: 0.1, 2: 0.1, 4: 0.375}, "2": {0: 0.1, 2: 0.125, 4: 0.5}, "3": {0: 0.1, 2: 0.125, 4: 0.5},
            "4": {0: 0.1, 2: 0.125, 4: 0.875}}  # seed 4: DSRL only (its GRPO run did not finish)
    finished_edge = {"eval": [{"step": 0, "avg@8": 0.1}, {"step": 4, "avg@8": 0.0}]}
    results = _results(grpo, dsrl, {})
    results["runs"]["grpo@0.0001"] = {"1": finished_edge}
    a = analyse_comparison(results)

    diffs = [dsrl[sd][4] - grpo[sd][4] for sd in ("1", "2", "3")]
    assert a["decisive"]["n"] == 3
    assert a["decisive"]["mean"] == pytest.approx(statistics.fmean(diffs))
    assert a["decisive"]["sd"] == pytest.approx(statistics.stdev(diffs))
    assert a["decisive"]["half_width"] == pytest.approx(4.302653 * statistics.stdev(diffs) / 3 ** 0.5, rel=1e-5)
    assert a["equal_updates"]["4"]["mean"] == pytest.approx(statistics.fmean(
        [dsrl[sd][4] - grpo[sd][2] for sd in ("1", "2", "3")]))
    edge = a["edge_rates"]["grpo@0.0001"]
    assert edge["finished"] and edge["step"] == 4 and edge["value"] == 0.0 and a["keeps_rate"]


def test_an_unfinished_curve_keeps_the_base_and_every_whole_line(tmp_path):
    from benchmarks.real_model.run import curve_so_far

    base = {"step": 0, "avg@8": 0.1}
    curve = tmp_path / "eval.jsonl"
    curve.write_text('{"seed": 3, "step": 2, "avg@8": 0.2}\n{"seed": 3, "step": 4, "avg@8": 0.25}\n{"seed": 3, "st')
    assert curve_so_far(curve, base) == [base, {"step": 2, "avg@8": 0.2}, {"step": 4, "avg@8": 0.25}]
    assert curve_so_far(tmp_path / "missing.jsonl", base) == [base]


def test_a_second_sigterm_during_the_stop_is_ignored():
    import signal

    from benchmarks.real_model import run

    before = signal.getsignal(signal.SIGTERM)
    try:
        signal.signal(signal.SIGTERM, run._stop)
        with pytest.raises(run._Stopped):
            signal.raise_signal(signal.SIGTERM)
        signal.raise_signal(signal.SIGTERM)  # as `timeout` sends it again to the process group: nothing happens
        assert signal.getsignal(signal.SIGTERM) == signal.SIG_IGN
    finally:
        signal.signal(signal.SIGTERM, before)
