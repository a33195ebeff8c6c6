"""GRPO against DSRL, and the gradient alignment of log P(y) and log P(y|x), on a real pretrained model:
SmolLM2-135M-Instruct (benchmarks/real_model/asset.py) on 1-operation arithmetic with worked examples as earlier
chat turns (benchmarks/real_model/task.py).

    python -m benchmarks.real_model.run align --preset cpu      # alignment.json: >= 100 of the model's own rollouts
    python -m benchmarks.real_model.run compare --preset cpu    # results.json: GRPO vs DSRL, paired by seed

Rollouts are conditioned on the ChatML conversation; the pre-train-space context token is the tokenizer's BOS,
`<|im_start|>` (the paper's choice on Qwen). The trainers, evaluation (one fixed sampling draw for every method, seed
and step) and paired statistics are the miniature's (benchmarks/miniature). `compare` keeps finished runs of an
earlier call in the same folder, so seeds can be added across calls.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import torch

from benchmarks.miniature.evaluate import base_alignment, evaluate
from benchmarks.miniature.rl import RLSettings, eval_seed, run
from benchmarks.miniature.stats import paired_differences

from .asset import smollm2_path
from .task import messages, splits

HERE = Path(__file__).resolve().parent


@dataclass(frozen=True)
class Prompted:
    """A problem as the miniature's trainers and evaluation take it: the chat-templated prompt text and the answer."""

    prompt: str
    answer: str


@dataclass(frozen=True)
class Preset:
    name: str
    num_shots: int
    num_train: int
    num_test: int
    rl: RLSettings
    seeds: tuple[int, ...]
    alignment_pairs: int = 100
    methods: tuple[str, ...] = ("grpo", "dsrl")
    device: str = "cpu"
    extra: dict = field(default_factory=dict)


PRESETS = {
    "smoke": Preset("smoke", num_shots=1, num_train=8, num_test=2, seeds=(1,), alignment_pairs=2,
                    rl=RLSettings(steps=2, prompts_per_step=2, num_generations=2, learning_rate=1e-5,
                                  max_completion_length=8, dsrl_switch_step=1, eval_every=2, eval_k=2,
                                  eval_draw="fixed")),
    "cpu": Preset("cpu", num_shots=3, num_train=200, num_test=32, seeds=(1, 2),
                  rl=RLSettings(steps=8, prompts_per_step=4, num_generations=8, learning_rate=1e-5,
                                max_completion_length=24, dsrl_switch_step=3, eval_every=4, eval_k=8,
                                eval_draw="fixed")),
    "gpu": Preset("gpu", num_shots=3, num_train=4000, num_test=256, seeds=(1, 2, 3, 4, 5), device="cuda",
                  rl=RLSettings(steps=60, prompts_per_step=32, num_generations=8, learning_rate=1e-5,
                                max_completion_length=32, dsrl_switch_step=15, eval_every=5, eval_k=16,
                                eval_draw="fixed")),
}


def prompted(preset: Preset, tokenizer) -> dict[str, list[Prompted]]:
    data = splits(preset.num_train, preset.num_test, preset.num_shots)

    def one(p) -> Prompted:
        text = tokenizer.apply_chat_template(messages(p, data["shots"]), tokenize=False, add_generation_prompt=True)
        return Prompted(text, p.answer)

    return {name: [one(p) for p in data[name]] for name in ("train", "test")}


def _device(preset: Preset) -> str:
    return "cuda" if preset.device == "cuda" and torch.cuda.is_available() else "cpu"


def align(preset: Preset, out_dir: Path, model_dir: Path) -> dict:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    start = time.time()
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir).to(_device(preset))
    # Rollouts for test problems first, then train problems, until there are enough pairs.
    data = prompted(replace(preset, num_test=max(preset.num_test, preset.alignment_pairs)), tokenizer)
    summary = base_alignment(model, tokenizer, data["test"], preset.alignment_pairs, preset.rl.max_completion_length,
                             seed=0)
    out = {"preset": preset.name, "model": model_dir.name, **summary, "seconds": time.time() - start,
           "torch_threads": torch.get_num_threads(), "device": _device(preset)}
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "alignment.json").write_text(json.dumps(out, indent=1))
    return out


def compare(preset: Preset, out_dir: Path, model_dir: Path, cache_dir: Path) -> dict:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    start = time.time()
    s, device = preset.rl, _device(preset)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    data = prompted(preset, tokenizer)
    path = out_dir / "results.json"
    settings = json.loads(json.dumps(asdict(replace(preset, seeds=()))))
    earlier = json.loads(path.read_text()) if path.is_file() else None
    runs = earlier["runs"] if earlier and earlier["settings"] == settings else {m: {} for m in preset.methods}
    model = AutoModelForCausalLM.from_pretrained(model_dir).to(device)
    base = {"step": 0, **evaluate(model, tokenizer, data["test"], s.eval_k, s.max_completion_length,
                                  seed=eval_seed(s, 0, 0))}
    del model
    out_dir.mkdir(parents=True, exist_ok=True)
    acc = f"avg@{s.eval_k}"
    results: dict = {}
    for seed in preset.seeds:
        for method in preset.methods:
            if str(seed) in runs.setdefault(method, {}):
                continue
            print(f"[real-model] {method}, seed {seed}", flush=True)
            result = run(method, str(model_dir), data["train"], data["test"], s, seed,
                         str(cache_dir / f"{method}-{seed}"), device == "cpu")
            result["eval"] = [base, *result["eval"]]
            runs[method][str(seed)] = result
            steps = [p["step"] for p in result["eval"]]
            at = {m: {step: {sd: next(p[acc] for p in r["eval"] if p["step"] == step) for sd, r in by_seed.items()}
                      for step in steps} for m, by_seed in runs.items() if by_seed}
            results = {
                "preset": preset.name, "settings": settings, "model": model_dir.name, "base": base, "runs": runs,
                "paired_dsrl_vs_grpo": {str(step): paired_differences(at["dsrl"][step], at["grpo"][step])
                                        for step in steps} if "dsrl" in at and "grpo" in at else None,
                "device": device, "torch_threads": torch.get_num_threads(),
                "wall_seconds_this_call": time.time() - start,
            }
            path.write_text(json.dumps(results, indent=1))  # after every run: an interrupted call keeps its runs
    return results or (earlier or {})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.real_model.run", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=("align", "compare"))
    parser.add_argument("--preset", default="cpu", choices=sorted(PRESETS))
    parser.add_argument("--seeds", type=int, nargs="+", help="Override the preset's seeds.")
    parser.add_argument("--output-dir", type=Path, help="Default: benchmarks/real_model/results/PRESET")
    parser.add_argument("--cache-dir", type=Path, default=HERE / ".cache", help="Run scratch (git-ignored).")
    parser.add_argument("--model-dir", type=Path, help="A converted SmolLM2 folder (default: asset.smollm2_path()).")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's).")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    preset = PRESETS[args.preset]
    if args.seeds:
        preset = replace(preset, seeds=tuple(args.seeds))
    out_dir = args.output_dir or HERE / "results" / preset.name
    model_dir = args.model_dir or smollm2_path()
    if args.command == "align":
        r = align(preset, out_dir, model_dir)
        print(f"[real-model] {r['num_pairs']} pairs: cosine mean {r['cosine_mean']:.3f}, negative "
              f"{r['negative_frac']:.0%}, per-token log P(y|x) {r['logp_conditional_per_token']:.3f}, log P(y) "
              f"{r['logp_marginal_per_token']:.3f}, accuracy {r['accuracy']:.2f}; {r['seconds']:.0f} s")
        return 0
    r = compare(preset, out_dir, model_dir, args.cache_dir)
    final = (r.get("paired_dsrl_vs_grpo") or {}).get(str(preset.rl.steps))
    if final:
        print(f"[real-model] DSRL - GRPO at step {preset.rl.steps}: {final['mean']:+.3f} over {final['n']} seeds"
              + (f" ± {final['half_width']:.3f}" if final["half_width"] is not None else ""))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
