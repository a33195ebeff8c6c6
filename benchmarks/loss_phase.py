"""Loss + backward of one fixed batch: time and peak memory of PreRL / NSR-PreRL / joint / DSRL against GRPOTrainer.

Every trainer is built in this process from the same randomly initialised model, and scores the same batch: `--rollouts`
completions of exactly `--completion-length` tokens (random tokens unless `--generate`) for one prompt, of which a fraction `--negative-fraction` is
rewarded 0 and the rest 1, after a random prompt of `--prompt-length` tokens. Rounds alternate between the trainers (the
order rotates each round), the first `--warmup` rounds are dropped, and medians are reported as ratios to GRPO: of wall
time, and of the process's CPU time (less sensitive to other jobs sharing the CPU).

Memory: on CUDA, the peak allocated during loss + backward above what was allocated before it. On the CPU, the peak of
autograd's saved tensors alive at once (the activations kept for backward; parameters are not counted).

    python benchmarks/loss_phase.py                                   # 4-layer d=256 Qwen2, 2 CPU cores
    python benchmarks/loss_phase.py --shape qwen2.5-0.5b --device cuda --bf16 --prompt-length 128 \\
        --completion-length 1024
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
import warnings

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402
from datasets import Dataset  # noqa: E402
from transformers import Qwen2Config, Qwen2ForCausalLM  # noqa: E402
from trl import GRPOConfig, GRPOTrainer  # noqa: E402

from prerl_trl import DSRLConfig, DSRLTrainer, PreRLConfig, PreRLTrainer  # noqa: E402
from prerl_trl.tiny import build_tiny_tokenizer  # noqa: E402

SHAPES = {
    "tiny": dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                 num_key_value_heads=2),
    "small": dict(hidden_size=256, intermediate_size=1024, num_hidden_layers=4, num_attention_heads=4,
                  num_key_value_heads=2),
    "qwen2.5-0.5b": dict(hidden_size=896, intermediate_size=4864, num_hidden_layers=24, num_attention_heads=14,
                         num_key_value_heads=2, rope_theta=1_000_000.0, tie_word_embeddings=True),
}
QWEN_VOCAB = 151_936

TRAINERS = {
    "grpo": (GRPOTrainer, GRPOConfig, {}),
    "prerl_all": (PreRLTrainer, PreRLConfig, {"prerl_sample_filter": "all"}),
    "nsr_prerl": (PreRLTrainer, PreRLConfig, {}),
    "joint": (PreRLTrainer, PreRLConfig, {"rl_loss_coef": 1.0}),
    "dsrl_after_switch": (DSRLTrainer, DSRLConfig, {"dsrl_switch_step": 0}),
    # NSR-PreRL scored after a multi-token context (prerl_context="chat_frame"): a frame of --frame-length tokens
    "nsr_prerl_frame": (PreRLTrainer, PreRLConfig, {}),
}


def build_model(shape: str, directory: str, max_positions: int) -> str:
    """A randomly initialised Qwen2 of `shape` (no download) and the embedded tokenizer, saved to `directory`."""
    tokenizer = build_tiny_tokenizer()
    vocab = QWEN_VOCAB if shape == "qwen2.5-0.5b" else len(tokenizer)
    config = Qwen2Config(vocab_size=vocab, max_position_embeddings=max(max_positions, 512),
                         eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id, **SHAPES[shape])
    torch.manual_seed(0)
    Qwen2ForCausalLM(config).save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


class SavedTensorPeak:
    """Peak bytes of autograd's saved tensors alive at once (parameters excluded), via saved_tensors_hooks."""

    class _Held:
        def __init__(self, tensor: torch.Tensor, owner: SavedTensorPeak) -> None:
            self.tensor, self.owner = tensor, owner
            self.nbytes = 0 if isinstance(tensor, torch.nn.Parameter) else tensor.numel() * tensor.element_size()
            owner.alive += self.nbytes
            owner.peak = max(owner.peak, owner.alive)

        def __del__(self) -> None:
            self.owner.alive -= self.nbytes

    def __init__(self) -> None:
        self.alive = self.peak = 0

    def hooks(self):
        return torch.autograd.graph.saved_tensors_hooks(lambda t: self._Held(t, self), lambda held: held.tensor)


def positional_reward(negative_fraction: float, group: int):
    def reward(completions, **kwargs) -> list[float]:
        return [0.0 if (i % group) < round(negative_fraction * group) else 1.0 for i in range(len(completions))]

    return reward


def random_generate(length: int):
    """A stand-in for `model.generate`: the prompt followed by `length` random non-special tokens (no EOS)."""

    def generate(input_ids, **kwargs):
        generator = torch.Generator().manual_seed(2)
        completion = torch.randint(10, 300, (input_ids.size(0), length), generator=generator)
        return torch.cat([input_ids, completion.to(input_ids.device)], dim=1)

    return generate


def make_batch(trainer, cli, prompt_ids: torch.Tensor, frame: bool = False) -> dict:
    trainer.model.train()
    torch.manual_seed(0)
    if not cli.generate:  # what the loss costs does not depend on what the completions say
        trainer.model.generate = random_generate(cli.completion_length)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        batch = trainer._generate_and_score_completions([trainer.train_dataset[0]] * cli.rollouts)
    if not cli.generate:
        del trainer.model.generate
    batch["prompt_ids"] = prompt_ids.to(batch["completion_ids"].device)
    batch["prompt_mask"] = torch.ones_like(batch["prompt_ids"])
    assert batch["completion_mask"].sum(1).min() == cli.completion_length, "completions must have the forced length"
    if frame:  # the cost of a frame depends on its length, not its words: random tokens, shared by every row
        generator = torch.Generator().manual_seed(3)
        context = torch.randint(10, 300, (1, cli.frame_length), generator=generator).expand(cli.rollouts, -1)
        batch["prerl_context_ids"] = context.to(batch["completion_ids"].device).contiguous()
        batch["prerl_context_mask"] = torch.ones_like(batch["prerl_context_ids"])
    return batch


def loss_and_backward(trainer, batch, cuda: bool) -> tuple[float, float, int]:
    model = trainer.model
    model.zero_grad(set_to_none=True)
    probe = SavedTensorPeak()
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
    start, cpu_start = time.perf_counter(), time.process_time()
    with probe.hooks():
        loss = trainer.compute_loss(model, batch)
        loss.backward()
    if cuda:
        torch.cuda.synchronize()
    seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start
    peak = torch.cuda.max_memory_allocated() - before if cuda else probe.peak
    model.zero_grad(set_to_none=True)
    return seconds, cpu_seconds, peak


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shape", choices=sorted(SHAPES), default="small")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--bf16", action="store_true")
    parser.add_argument("--prompt-length", type=int, default=64)
    parser.add_argument("--completion-length", type=int, default=256)
    parser.add_argument("--rollouts", type=int, default=16, help="Rollouts of one prompt: the batch.")
    parser.add_argument("--negative-fraction", type=float, default=0.5)
    parser.add_argument("--generate", action="store_true",
                        help="Sample the completions from the model (default: random tokens, same cost for the loss).")
    parser.add_argument("--frame-length", type=int, default=148,
                        help="Context tokens of nsr_prerl_frame (148: SmolLM2's frame with three worked examples).")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--trainers", default=",".join(TRAINERS), help="Comma-separated subset of " + ",".join(TRAINERS))
    parser.add_argument("--output", default="benchmarks/results/loss_phase.json")
    cli = parser.parse_args()
    names = cli.trainers.split(",")
    if "grpo" not in names:
        parser.error("--trainers must include grpo: ratios are taken against it")
    cuda = cli.device == "cuda"
    if cli.rounds <= cli.warmup:
        parser.error(f"--rounds={cli.rounds} must exceed --warmup={cli.warmup}")

    workdir = tempfile.mkdtemp(prefix="prerl_loss_phase_")
    model_dir = build_model(cli.shape, os.path.join(workdir, "model"), cli.prompt_length + cli.completion_length + 8)
    dataset = Dataset.from_dict({"prompt": ["1+1="] * 4})
    generator = torch.Generator().manual_seed(1)
    prompt_ids = torch.randint(10, 300, (cli.rollouts, cli.prompt_length), generator=generator)

    trainers, batches = {}, {}
    for name in names:
        trainer_cls, config_cls, extra = TRAINERS[name]
        args = config_cls(
            output_dir=os.path.join(workdir, name), per_device_train_batch_size=cli.rollouts,
            num_generations=cli.rollouts, max_completion_length=cli.completion_length, report_to="none",
            bf16=cli.bf16, use_cpu=not cuda, save_strategy="no", seed=0, disable_tqdm=True, logging_steps=1,
            generation_kwargs={"min_new_tokens": cli.completion_length}, **extra,
        )
        reward = positional_reward(cli.negative_fraction, cli.rollouts)
        trainer = trainer_cls(model_dir, reward_funcs=reward, args=args, train_dataset=dataset)
        trainer.current_gradient_accumulation_steps = 1
        trainers[name], batches[name] = trainer, make_batch(trainer, cli, prompt_ids, frame=name.endswith("_frame"))

    times = {name: [] for name in names}
    cpu_times = {name: [] for name in names}
    peaks = {name: [] for name in names}
    for r in range(cli.rounds):
        order = names[r % len(names):] + names[: r % len(names)]
        for name in order:
            seconds, cpu_seconds, peak = loss_and_backward(trainers[name], batches[name], cuda)
            if r >= cli.warmup:
                times[name].append(seconds)
                cpu_times[name].append(cpu_seconds)
                peaks[name].append(peak)

    results = {}
    for name in names:
        results[name] = {"loss_backward_median_s": statistics.median(times[name]), "times_s": times[name],
                         "cpu_time_median_s": statistics.median(cpu_times[name]), "peak_bytes": max(peaks[name])}
    base = results["grpo"]
    kept = {name: int((b.get("prerl_loss_mask", b["completion_mask"]).sum(1) > 0).sum()) for name, b in batches.items()}
    unit = "CUDA peak MiB" if cuda else "saved MiB"
    print(f"{'trainer':<18} {'rows in loss':>12} {'loss+bwd s':>11} {'x GRPO':>7} {'CPU s':>8} {'x GRPO':>7} "
          f"{unit:>14} {'x GRPO':>7}")
    for name, r in results.items():
        r["time_ratio_vs_grpo"] = r["loss_backward_median_s"] / base["loss_backward_median_s"]
        r["cpu_time_ratio_vs_grpo"] = r["cpu_time_median_s"] / base["cpu_time_median_s"]
        r["peak_ratio_vs_grpo"] = r["peak_bytes"] / base["peak_bytes"]
        r["rows_in_loss"] = kept[name]
        print(f"{name:<18} {kept[name]:>12} {r['loss_backward_median_s']:11.4f} {r['time_ratio_vs_grpo']:7.2f} "
              f"{r['cpu_time_median_s']:8.3f} {r['cpu_time_ratio_vs_grpo']:7.2f} "
              f"{r['peak_bytes'] / 2**20:14.1f} {r['peak_ratio_vs_grpo']:7.2f}")
    device = torch.cuda.get_device_name(0) if cuda else f"cpu ({torch.get_num_threads()} threads)"
    os.makedirs(os.path.dirname(cli.output) or ".", exist_ok=True)
    with open(cli.output, "w") as f:
        json.dump({"setup": vars(cli), "device": device, "memory": unit, "results": results}, f, indent=2)
    print(f"wrote {cli.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
