"""Presets: `smoke` (CI, seconds), `cpu` (the first committed results, 2 cores), `cpu-v2` (the same model and
budget on a corpus with standalone solutions, a larger test set, a fixed evaluation draw, evaluation every 5 steps),
`cpu-v3` (cpu-v2 at the paper's warm-up share, 90 steps, two bases) and `gpu` (bigger model, one H100)."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from .pretrain import PretrainSettings
from .rl import RLSettings


@dataclass(frozen=True)
class Preset:
    name: str
    num_steps: int  # operations per problem
    num_pretrain: int  # corpus documents
    num_rl: int  # RL prompts
    num_val: int  # validation problems (learning-rate sweep)
    num_test: int  # held-out test problems
    pretrain: PretrainSettings
    rl: RLSettings
    seeds: tuple[int, ...] = (1, 2, 3)
    sweep_seed: int = 0  # outside `seeds`
    sweep_learning_rates: tuple[float, ...] = (1e-5, 3e-5, 1e-4)
    alignment_pairs: int = 100
    jobs: int = 1  # RL runs in parallel processes
    device: str = "cpu"
    standalone_share: float = 0.0  # share of solution-only corpus documents (task.corpus); 0: the original corpus
    extra: dict = field(default_factory=dict)


PRESETS = {
    "smoke": Preset(
        name="smoke", num_steps=2, num_pretrain=200, num_rl=16, num_val=4, num_test=4,
        pretrain=PretrainSettings(hidden_size=32, num_layers=1, num_heads=2, intermediate_size=64, vocab_size=280,
                                  steps=3, batch_size=8),
        rl=RLSettings(steps=2, prompts_per_step=2, num_generations=4, max_completion_length=12, dsrl_switch_step=1,
                      eval_every=2, eval_k=4),
        seeds=(1,), sweep_learning_rates=(1e-3,), alignment_pairs=4,
    ),
    "cpu": Preset(
        name="cpu", num_steps=3, num_pretrain=20000, num_rl=1000, num_val=64, num_test=64,
        pretrain=PretrainSettings(hidden_size=128, num_layers=4, num_heads=4, intermediate_size=512, vocab_size=320,
                                  steps=800, batch_size=32, learning_rate=3e-3),
        rl=RLSettings(steps=30, prompts_per_step=8, num_generations=8, max_completion_length=72, dsrl_switch_step=10,
                      eval_every=10, eval_k=16),
        jobs=2,
    ),
    # Miniature v2 (issue 16): 30% of the corpus is solutions alone after BOS, so log P(y | BOS) is in distribution;
    # 128 test problems x 16 samples with one fixed sampling draw shared by every method, seed and step; evaluation
    # every 5 steps; a learning-rate grid one point wider on each side of the first one.
    "cpu-v2": Preset(
        name="cpu-v2", num_steps=3, num_pretrain=20000, num_rl=1000, num_val=64, num_test=128,
        pretrain=PretrainSettings(hidden_size=128, num_layers=4, num_heads=4, intermediate_size=512, vocab_size=320,
                                  steps=800, batch_size=32, learning_rate=3e-3),
        rl=RLSettings(steps=30, prompts_per_step=8, num_generations=8, max_completion_length=72, dsrl_switch_step=10,
                      eval_every=5, eval_k=16, eval_draw="fixed"),
        sweep_learning_rates=(3e-6, 1e-5, 3e-5, 1e-4, 3e-4), standalone_share=0.3, jobs=2,
    ),
    # Miniature v3 (issue 22): the paper's operating point. The cpu-v2 corpus, model and test set; the warm-up at the
    # paper's share (5 NSR-PreRL updates of 90, the paper 19 of 348), a run long enough for GRPO to flatten, the rate
    # by the rule in README.md, two bases (pretraining seeds 0 and 1: `--pretrain-seed`). Evaluation at the steps
    # the measures need: early ones for the speed, GRPO at t - 5 for DSRL at t (equal GRPO updates), the last third.
    "cpu-v3": Preset(
        name="cpu-v3", num_steps=3, num_pretrain=20000, num_rl=1000, num_val=64, num_test=128,
        pretrain=PretrainSettings(hidden_size=128, num_layers=4, num_heads=4, intermediate_size=512, vocab_size=320,
                                  steps=800, batch_size=32, learning_rate=3e-3),
        rl=RLSettings(steps=90, prompts_per_step=8, num_generations=8, max_completion_length=72, dsrl_switch_step=5,
                      learning_rate=1e-4, eval_k=16, eval_draw="fixed",
                      eval_steps=(5, 10, 20, 30, 45, 60, 85, 90)),
        seeds=(1, 2, 3, 4, 5, 6), standalone_share=0.3, jobs=2,
    ),
    "gpu": Preset(
        name="gpu", num_steps=4, num_pretrain=50000, num_rl=5000, num_val=128, num_test=256,
        pretrain=PretrainSettings(hidden_size=256, num_layers=6, num_heads=8, intermediate_size=1024, vocab_size=320,
                                  steps=2500, batch_size=128, learning_rate=2e-3),
        rl=RLSettings(steps=50, prompts_per_step=32, num_generations=8, max_completion_length=96, dsrl_switch_step=15,
                      eval_every=10, eval_k=16),
        device="cuda", jobs=8,
    ),
}


def get_preset(name: str, **overrides) -> Preset:
    if name not in PRESETS:
        raise ValueError(f"preset={name!r} is not known; use one of {', '.join(PRESETS)}")
    preset = PRESETS[name]
    rl_overrides = {k: v for k, v in overrides.items() if k in RLSettings.__dataclass_fields__ and v is not None}
    other = {k: v for k, v in overrides.items() if k in Preset.__dataclass_fields__ and v is not None}
    return replace(preset, rl=replace(preset.rl, **rl_overrides), **other)
