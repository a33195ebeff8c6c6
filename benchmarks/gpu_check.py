"""The GPU check: a few real steps of every trainer on CUDA in bf16, the loss-phase benchmark, gradient alignment,
DeepSpeed ZeRO-3 across the DSRL switch, and vLLM colocate when vLLM is importable. One JSON summary.

Run through `benchmarks/gpu_check.sh` (which installs carried wheels first on an offline machine). `--cpu` is the
dry-run kept in the test suite: the same sections on a tiny model on the CPU, in seconds.
Each section runs on its own; a failure is recorded with its error and the script exits 1 at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import traceback
import warnings
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402
from datasets import Dataset  # noqa: E402
from loss_phase import build_model  # noqa: E402
from trainer_overhead import parity_reward  # noqa: E402
from trl import GRPOConfig, GRPOTrainer  # noqa: E402

from prerl_trl import DSRLConfig, DSRLTrainer, PreRLConfig, PreRLTrainer  # noqa: E402
from prerl_trl.diagnostics import gradient_alignment  # noqa: E402

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


def train_steps(cli, model_dir: str, workdir: str) -> dict:
    """A few optimizer steps of each trainer with transformers generation: finite losses, weights that moved, times."""
    runs = {
        "grpo": (GRPOTrainer, GRPOConfig, {}),
        "nsr_prerl": (PreRLTrainer, PreRLConfig, {}),
        "joint": (PreRLTrainer, PreRLConfig, {"rl_loss_coef": 1.0}),
        "dsrl": (DSRLTrainer, DSRLConfig, {"dsrl_switch_step": cli.steps // 2}),
    }
    dataset = Dataset.from_dict({"prompt": [f"{a}+{b}=" for a in range(8) for b in range(8)]})
    out = {}
    for name, (trainer_cls, config_cls, extra) in runs.items():
        torch.manual_seed(0)
        args = config_cls(
            output_dir=os.path.join(workdir, name), per_device_train_batch_size=cli.rollouts, num_generations=4,
            max_completion_length=cli.step_completion_length, max_steps=cli.steps, learning_rate=1e-4,
            logging_steps=1, report_to="none", save_strategy="no", bf16=not cli.cpu, use_cpu=cli.cpu, seed=0,
            disable_tqdm=True, generation_kwargs={"min_new_tokens": cli.step_completion_length}, **extra,
        )
        trainer = trainer_cls(model_dir, reward_funcs=parity_reward, args=args, train_dataset=dataset)
        before = [p.detach().float().clone() for p in trainer.model.parameters()]
        start = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            trainer.train()
        seconds = time.perf_counter() - start
        history = trainer.state.log_history
        losses = [h["loss"] for h in history if "loss" in h]
        moved = max((a - b.float()).abs().max().item() for a, b in zip(before, trainer.model.parameters(), strict=True))
        step_times = [h["step_time"] for h in history if "step_time" in h][1:]
        out[name] = {
            "losses": losses, "active": [h.get("prerl/active") for h in history if "loss" in h],
            "max_weight_change": moved, "train_seconds": seconds,
            "step_time_median": sorted(step_times)[len(step_times) // 2] if step_times else None,
            "peak_gpu_gib": torch.cuda.max_memory_allocated() / 2**30 if not cli.cpu else None,
        }
        assert len(losses) == cli.steps and all(torch.isfinite(torch.tensor(losses))), f"{name}: losses {losses}"
        assert moved > 0, f"{name}: the weights did not move"
        del trainer
        if not cli.cpu:
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
    base = out["grpo"]["step_time_median"]
    for r in out.values():
        r["step_time_ratio_vs_grpo"] = r["step_time_median"] / base if base and r["step_time_median"] else None
    dsrl = out["dsrl"]["active"]
    assert dsrl == [1.0] * (cli.steps // 2) + [0.0] * (cli.steps - cli.steps // 2), f"DSRL phase trace {dsrl}"
    return out


def loss_phase(cli, out_dir: str) -> dict:
    """benchmarks/loss_phase.py with the GPU preset (or a tiny CPU one)."""
    output = os.path.join(out_dir, "loss_phase.json")
    if cli.cpu:
        flags = ["--shape", "tiny", "--prompt-length", "16", "--completion-length", "32", "--rounds", "3", "--warmup",
                 "1"]
    else:
        flags = ["--shape", cli.shape, "--device", "cuda", "--bf16", "--prompt-length", "128", "--completion-length",
                 "1024"]
    command = [sys.executable, str(HERE / "loss_phase.py"), *flags, "--output", output]
    result = subprocess.run(command, capture_output=True, text=True, timeout=cli.section_timeout)
    print(result.stdout[-3000:])
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(Path(output).read_text())


def grad_align(cli, model_dir: str) -> dict:
    """gradient_alignment of log P(y) and log P(y|x) on a few pairs."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    device = "cpu" if cli.cpu else "cuda"
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32 if cli.cpu else torch.bfloat16)
    model.to(device)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    prompts = [f"What is {a} + {b}? Answer:" for a, b in [(1, 2), (3, 4), (2, 2), (5, 1)]]
    completions = [f" {a} plus {b} is {a + b}. \\boxed{{{a + b}}}" for a, b in [(1, 2), (3, 4), (2, 2), (5, 1)]]
    rows = gradient_alignment(model, tokenizer, prompts, completions)
    assert all(torch.isfinite(torch.tensor([r["inner_product"], r["cosine"]])).all() for r in rows)
    return {"pairs": len(rows), "rows": rows, "mean_cosine": sum(r["cosine"] for r in rows) / len(rows)}


def zero3(cli, out_dir: str) -> dict:
    """DeepSpeed ZeRO-3 (one process) across the DSRL switch, and save_model, through tests/scripts/dist_train.py."""
    try:
        import deepspeed  # noqa: F401
    except ImportError as error:
        return {"skipped": f"deepspeed is not importable: {error}"}
    target = os.path.join(out_dir, "zero3")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])}
    if cli.cpu:
        env["DS_ACCELERATOR"] = "cpu"
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=1", "--master_port=29533",
               str(ROOT / "tests" / "scripts" / "dist_train.py"), "--out", target, "--zero3", "--steps", "4",
               "--backend", "gloo" if cli.cpu else "nccl"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=cli.section_timeout, env=env)
    assert result.returncode == 0, (result.stdout[-2000:] + result.stderr[-3000:])
    summary = json.loads(Path(target, "losses_rank0.json").read_text())
    assert summary["active"] == [1.0, 1.0, 0.0, 0.0], summary
    assert Path(target, "run", "model.safetensors").exists(), "save_model wrote no weights"
    return summary


def vllm_colocate(cli, model_dir: str, workdir: str) -> dict:
    """A few DSRL steps with vLLM in colocate mode, when vLLM is importable."""
    try:
        import vllm  # noqa: F401
    except ImportError as error:
        return {"skipped": f"vLLM is not importable here: {error}"}
    if cli.cpu:
        return {"skipped": "vLLM needs a GPU"}
    dataset = Dataset.from_dict({"prompt": [f"{a}+{b}=" for a in range(8) for b in range(8)]})
    args = DSRLConfig(
        output_dir=os.path.join(workdir, "vllm"), per_device_train_batch_size=8, num_generations=4,
        max_completion_length=64, max_steps=4, dsrl_switch_step=2, learning_rate=1e-4, logging_steps=1,
        report_to="none", save_strategy="no", bf16=True, use_vllm=True, vllm_mode="colocate",
        vllm_gpu_memory_utilization=0.3, seed=0, disable_tqdm=True,
    )
    trainer = DSRLTrainer(model_dir, reward_funcs=parity_reward, args=args, train_dataset=dataset)
    trainer.train()
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    assert len(losses) == 4 and all(torch.isfinite(torch.tensor(losses)))
    return {"losses": losses}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cpu", action="store_true", help="Dry-run on the CPU with a tiny model.")
    parser.add_argument("--out", default="gpu_check_out")
    parser.add_argument("--shape", default="qwen2.5-0.5b")
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--rollouts", type=int, default=8)
    parser.add_argument("--step-completion-length", type=int, default=128)
    parser.add_argument("--section-timeout", type=int, default=400)
    parser.add_argument("--sections", default="train_steps,loss_phase,grad_align,zero3,vllm")
    cli = parser.parse_args()
    if cli.cpu:
        cli.shape, cli.step_completion_length, cli.rollouts, cli.steps = "tiny", 8, 8, 2
    elif not torch.cuda.is_available():
        parser.error("no CUDA device: run with --cpu for the dry-run")
    os.makedirs(cli.out, exist_ok=True)
    workdir = tempfile.mkdtemp(prefix="prerl_gpu_check_")
    model_dir = build_model(cli.shape, os.path.join(workdir, "model"), 2048)

    sections = {
        "train_steps": lambda: train_steps(cli, model_dir, workdir),
        "loss_phase": lambda: loss_phase(cli, cli.out),
        "grad_align": lambda: grad_align(cli, model_dir),
        "zero3": lambda: zero3(cli, cli.out),
        "vllm": lambda: vllm_colocate(cli, model_dir, workdir),
    }
    summary: dict = {
        "device": "cpu" if cli.cpu else torch.cuda.get_device_name(0),
        "torch": torch.__version__,
        "shape": cli.shape,
        "sections": {},
    }
    failed = []
    for name in cli.sections.split(","):
        start = time.perf_counter()
        print(f"== {name}", flush=True)
        try:
            result = {"ok": True, **sections[name]()}
        except Exception as error:  # record and go on: one broken section must not hide the others
            traceback.print_exc()
            result = {"ok": False, "error": f"{type(error).__name__}: {error}"[-2000:]}
            failed.append(name)
        result["seconds"] = round(time.perf_counter() - start, 1)
        summary["sections"][name] = result
        print(f"== {name}: {'ok' if result['ok'] else 'FAILED'} in {result['seconds']} s", flush=True)
        with open(os.path.join(cli.out, "gpu_check.json"), "w") as f:  # written after every section
            json.dump(summary, f, indent=2, default=str)
    print(f"wrote {os.path.join(cli.out, 'gpu_check.json')}; failed: {failed or 'none'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
