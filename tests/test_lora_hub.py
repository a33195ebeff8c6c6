"""LoRA on both sides of the DSRL switch, and pushing to the Hub (against a recording stand-in for HfApi), offline."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from conftest import boxed_reward
from huggingface_hub import HfApi, RepoUrl
from peft import LoraConfig, PeftModel
from test_trainer import rollout_tokens, sequence_token_logps
from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback

from prerl_trl import DSRLConfig, DSRLTrainer
from prerl_trl.cli import main
from prerl_trl.tiny import toy_dataset, toy_problems

SWITCH, STEPS = 2, 4
BETA = 0.1


def dsrl_args(tmp_path: Path, **overrides) -> DSRLConfig:
    values = dict(
        output_dir=str(tmp_path / "out"), per_device_train_batch_size=16, num_generations=8,
        max_completion_length=8, max_steps=STEPS, dsrl_switch_step=SWITCH, learning_rate=2e-2, logging_steps=1,
        report_to="none", bf16=False, use_cpu=True, save_strategy="no", seed=11,
    )
    return DSRLConfig(**{**values, **overrides})


def base_name(peft_name: str) -> str:
    """`base_model.model.model.layers.0.self_attn.q_proj.base_layer.weight` -> `model.layers.0.self_attn.q_proj.weight`."""
    return peft_name.removeprefix("base_model.model.").replace(".base_layer", "")


class Snapshots(TrainerCallback):
    """The model's parameters at the start and after each optimizer step."""

    def __init__(self) -> None:
        self.at: dict[int, dict[str, torch.Tensor]] = {}

    def _take(self, model, step: int) -> None:
        self.at[step] = {name: p.detach().clone() for name, p in model.named_parameters()}

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        self._take(model, 0)

    def on_step_end(self, args, state, control, model=None, **kwargs):
        self._take(model, state.global_step)


@pytest.fixture(scope="module")
def lora_run(tiny_model_dir, tmp_path_factory):
    """DSRL with a LoRA adapter and beta > 0: 2 NSR-PreRL steps, then 2 GRPO steps."""
    tmp_path = tmp_path_factory.mktemp("lora")
    snapshots = Snapshots()
    peft_config = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM")
    trainer = DSRLTrainer(
        tiny_model_dir, reward_funcs=boxed_reward, args=dsrl_args(tmp_path, beta=BETA),
        train_dataset=toy_dataset(repeat=4), peft_config=peft_config, callbacks=[snapshots],
    )
    trainer.train()
    return trainer, snapshots, tmp_path


def test_lora_trains_the_adapter_and_leaves_the_base_weights_in_both_phases(lora_run, tiny_model_dir):
    trainer, snapshots, _ = lora_run
    trace = [h["prerl/active"] for h in trainer.state.log_history if "prerl/active" in h]
    assert trace == [1.0] * SWITCH + [0.0] * (STEPS - SWITCH)
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir).state_dict()
    start, at_switch, end = snapshots.at[0], snapshots.at[SWITCH], snapshots.at[STEPS]
    adapter = [name for name in start if "lora_" in name]
    frozen = [name for name in start if "lora_" not in name]
    assert adapter and frozen
    for name in frozen:  # unchanged by NSR-PreRL and by GRPO, and equal to the model on disk
        torch.testing.assert_close(start[name], base[base_name(name)], rtol=0, atol=0)
        assert torch.equal(at_switch[name], start[name]) and torch.equal(end[name], start[name]), name
    assert any(not torch.equal(at_switch[name], start[name]) for name in adapter)  # NSR-PreRL moved the adapter
    assert any(not torch.equal(end[name], at_switch[name]) for name in adapter)  # and so did GRPO
    assert all(p.requires_grad == ("lora_" in name) for name, p in trainer.model.named_parameters())


def test_lora_reference_is_the_base_model_in_the_right_space(lora_run, tiny_model_dir):
    """beta > 0 with PEFT: the reference is the adapter-disabled model, scored as log P(y) before the switch and as
    log P(y|x) after it, computed here from the base model on disk, one rollout at a time."""
    trainer, _, _ = lora_run
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    context_id = AutoTokenizer.from_pretrained(tiny_model_dir).convert_tokens_to_ids("<|im_start|>")
    rows = [trainer.train_dataset[p] for p in range(2) for _ in range(8)]
    saved_step, saved_filter = trainer.state.global_step, trainer.args.prerl_sample_filter
    saved_space, saved_switched = trainer.args.prerl_kl_space, trainer._dsrl_phase.switched
    trainer.args.prerl_sample_filter = "all"  # every rollout in the pre-train-space loss, so each one gets a reference
    trainer.args.prerl_kl_space = "pretrain"  # a KL term (and so a reference pass) in the pre-train phase too
    try:
        for step, key in ((0, "prerl_ref_per_token_logps"), (STEPS, "ref_per_token_logps")):
            trainer.state.global_step = step
            trainer._dsrl_phase.switched = step >= SWITCH  # back before the switch, as a fresh run would be
            torch.manual_seed(5)
            trainer.model.train()
            inputs = trainer._generate_and_score_completions(rows)
            assert inputs["prerl_active"][0].item() == float(step < SWITCH)
            mask = inputs["prerl_loss_mask"] if step < SWITCH else inputs["completion_mask"]
            checked = 0
            for i in range(len(rows)):
                prompt, completion = rollout_tokens(inputs, i)
                if mask[i].sum() == 0:
                    continue
                with torch.no_grad():
                    marginal = sequence_token_logps(base, [context_id], completion)
                    conditional = sequence_token_logps(base, prompt, completion)
                    policy = sequence_token_logps(trainer.model, prompt if step else [context_id], completion)
                got = inputs[key][i, : len(completion)]
                expected, other = (marginal, conditional) if step < SWITCH else (conditional, marginal)
                torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)
                assert not torch.allclose(got, other, atol=1e-3)
                assert not torch.allclose(got, policy, atol=1e-4)  # the adapter is off, not the trained policy
                checked += 1
            assert checked > 0
    finally:
        trainer.state.global_step, trainer.args.prerl_sample_filter = saved_step, saved_filter
        trainer.args.prerl_kl_space, trainer._dsrl_phase.switched = saved_space, saved_switched


def test_lora_output_is_an_adapter_that_loads_on_the_base_model(lora_run, tiny_model_dir):
    trainer, _, tmp_path = lora_run
    trainer.save_model()
    out = tmp_path / "out"
    assert (out / "adapter_config.json").exists() and (out / "adapter_model.safetensors").exists()
    assert not (out / "model.safetensors").exists()
    assert json.loads((out / "adapter_config.json").read_text())["r"] == 4
    loaded = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_model_dir), str(out)).eval()
    ids = torch.tensor([[5, 17, 33, 2, 40, 41]])
    trainer.model.eval()
    with torch.no_grad():
        torch.testing.assert_close(loaded(input_ids=ids).logits, trainer.model(input_ids=ids).logits)
        plain = AutoModelForCausalLM.from_pretrained(tiny_model_dir)(input_ids=ids).logits
    assert not torch.allclose(loaded(input_ids=ids).logits, plain, atol=1e-4)


def write_toy_jsonl(path: Path) -> Path:
    path.write_text("".join(json.dumps({"problem": q, "answer": a}) + "\n" for q, a in toy_problems()))
    return path


CLI_COMMON = [
    "--trainer", "dsrl", "--dsrl_switch_step", "1", "--max_steps", "2", "--per_device_train_batch_size", "8",
    "--num_generations", "4", "--max_completion_length", "6", "--report_to", "none", "--save_strategy", "no",
    "--system_prompt", "Put the answer in \\boxed{}.", "--bf16", "false", "--use_cpu", "true",
]


def test_cli_use_peft_saves_an_adapter(tiny_model_dir, tmp_path):
    out = tmp_path / "run"
    code = main([
        "train", "--model_name_or_path", tiny_model_dir, "--dataset_name", str(write_toy_jsonl(tmp_path / "toy.jsonl")),
        "--output_dir", str(out), *CLI_COMMON,
        "--use_peft", "true", "--lora_r", "4", "--lora_alpha", "8", "--lora_target_modules", "q_proj", "v_proj",
    ])
    assert code == 0
    config = json.loads((out / "adapter_config.json").read_text())
    assert config["r"] == 4 and set(config["target_modules"]) == {"q_proj", "v_proj"}
    assert not (out / "model.safetensors").exists()


# ----------------------------------------------------------------------------------------------------------------------
# Hub
@pytest.fixture
def fake_hub(tmp_path, monkeypatch):
    """HfApi.create_repo / upload_folder replaced by stand-ins that record the call and copy the uploaded folder."""
    calls: dict[str, list] = {"create_repo": [], "upload_folder": []}
    hub = tmp_path / "hub"

    def create_repo(self, repo_id, **kwargs):
        calls["create_repo"].append({"repo_id": repo_id, **kwargs})
        return RepoUrl(f"https://huggingface.co/{repo_id}")

    def upload_folder(self, *, repo_id, folder_path, ignore_patterns=None, **kwargs):
        target = hub / repo_id / str(len(calls["upload_folder"]))
        shutil.copytree(folder_path, target, ignore=shutil.ignore_patterns(*(ignore_patterns or [])))
        calls["upload_folder"].append({"repo_id": repo_id, "folder": target, **kwargs})
        return f"https://huggingface.co/{repo_id}/commit/0"

    monkeypatch.setattr(HfApi, "create_repo", create_repo)
    monkeypatch.setattr(HfApi, "upload_folder", upload_folder)
    return calls


def assert_uploaded_model(folder: Path, dataset_name: str) -> str:
    """The uploaded folder holds full weights, the tokenizer and a card naming the method, dataset and citation."""
    assert (folder / "model.safetensors").exists() and (folder / "config.json").exists()
    assert (folder / "tokenizer.json").exists() and (folder / "tokenizer_config.json").exists()
    assert not any(path.name.startswith("checkpoint-") for path in folder.iterdir())
    card = (folder / "README.md").read_text()
    for text in ("DSRL", "- dsrl", "- prerl", dataset_name, "2604.14142", "@article{tan2026prerl"):
        assert text in card, text
    return card


def test_push_to_hub_uploads_model_tokenizer_and_card(tiny_model_dir, tmp_path, fake_hub):
    args = dsrl_args(tmp_path, max_steps=1, push_to_hub=True, hub_model_id="someone/tiny-dsrl")
    trainer = DSRLTrainer(tiny_model_dir, reward_funcs=boxed_reward, args=args, train_dataset=toy_dataset())
    trainer.model.config._name_or_path = "someone/tiny-base"  # as when the base model came from the Hub
    trainer.train()
    trainer.push_to_hub(dataset_name="someone/toy-sums")
    assert fake_hub["create_repo"][0]["repo_id"] == "someone/tiny-dsrl"
    push = fake_hub["upload_folder"][-1]
    assert push["repo_id"] == "someone/tiny-dsrl"
    card = assert_uploaded_model(push["folder"], "someone/toy-sums")
    assert "someone/tiny-base" in card  # the base model
    model = AutoModelForCausalLM.from_pretrained(push["folder"])  # the uploaded weights are the trained ones
    for name, tensor in model.state_dict().items():
        torch.testing.assert_close(tensor, trainer.model.state_dict()[name])


def test_pushed_card_states_switch_step_filters_and_coefficients(tiny_model_dir, tmp_path, fake_hub):
    args = dsrl_args(tmp_path, max_steps=1, push_to_hub=True, hub_model_id="someone/tiny-dsrl", dsrl_switch_step=7)
    trainer = DSRLTrainer(tiny_model_dir, reward_funcs=boxed_reward, args=args, train_dataset=toy_dataset())
    trainer.push_to_hub(dataset_name="someone/toy-sums")
    card = (fake_hub["upload_folder"][-1]["folder"] / "README.md").read_text()
    for text in ("dsrl_switch_step", "7", "prerl_sample_filter", "negative", "prerl_loss_coef", "0.01"):
        assert text in card, text


def test_cli_push_to_hub_true(tiny_model_dir, tmp_path, fake_hub):
    data = write_toy_jsonl(tmp_path / "toy.jsonl")
    code = main([
        "train", "--model_name_or_path", tiny_model_dir, "--dataset_name", str(data),
        "--output_dir", str(tmp_path / "run"), *CLI_COMMON, "--push_to_hub", "true", "--hub_model_id", "someone/cli-dsrl",
    ])
    assert code == 0
    assert [call["repo_id"] for call in fake_hub["create_repo"]] == ["someone/cli-dsrl"]
    assert fake_hub["upload_folder"] and {call["repo_id"] for call in fake_hub["upload_folder"]} == {"someone/cli-dsrl"}
    assert_uploaded_model(fake_hub["upload_folder"][-1]["folder"], data.name)
