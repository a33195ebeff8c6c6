"""Generation backends (vLLM's offline engine, transformers `generate`), model and tokenizer loading."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from .cache import GenerationCache, WorkItem, prompt_hash
from .defaults import EvaluationError


def vllm_available() -> bool:
    """True when vLLM can be imported and a CUDA GPU is present."""
    import importlib.util

    if importlib.util.find_spec("vllm") is None:
        return False
    try:
        import torch

        return torch.cuda.is_available()
    except ImportError:  # pragma: no cover
        return False


def resolve_backend(backend: str) -> str:
    if backend not in ("auto", "vllm", "transformers"):
        raise EvaluationError(f"unknown backend {backend!r}: use auto, vllm or transformers")
    if backend == "auto":
        return "vllm" if vllm_available() else "transformers"
    if backend == "vllm":
        import importlib.util

        if importlib.util.find_spec("vllm") is None:
            raise EvaluationError("--backend vllm needs vLLM: pip install 'prerl-trl[vllm]'")
    return backend


def check_model_source(model: str, option: str = "--model") -> None:
    """Fail with one clear line when `model` is neither a local model directory nor a possible Hub id.

    A name that could be a Hub id (`Qwen/Qwen3-4B`) is left to transformers, whose error for a missing repo is
    already one line."""
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    path = Path(model).expanduser()
    if path.is_dir():
        return
    if path.exists():
        raise FileNotFoundError(f"{option} {model!r} is a file: pass the model's directory (the one with config.json)")
    try:
        validate_repo_id(model)
    except HFValidationError:
        raise FileNotFoundError(
            f"{option} {model!r}: no such local directory, and not a Hub id (like Qwen/Qwen3-4B). Check the path."
        ) from None


def load_tokenizer(model: str, **kwargs: Any) -> Any:
    """`AutoTokenizer`, except for a local directory whose tokenizer_config.json declares a generic
    `TokenizersBackend` / `PreTrainedTokenizerFast`: transformers 5 then still picks the model type's tokenizer class
    (for a Qwen2 config, `Qwen2Tokenizer`, which rebuilds a byte-level BPE and loses a custom tokenizer.json)."""
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    check_model_source(model)
    tokenizer = AutoTokenizer.from_pretrained(model, **kwargs)
    config_file = Path(model) / "tokenizer_config.json"
    if config_file.is_file() and (Path(model) / "tokenizer.json").is_file():
        with open(config_file, encoding="utf-8") as f:
            declared = json.load(f).get("tokenizer_class")
        if declared in ("TokenizersBackend", "PreTrainedTokenizerFast") and type(tokenizer).__name__ != declared:
            tokenizer = PreTrainedTokenizerFast.from_pretrained(model, **kwargs)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_hf_model(model: str, *, dtype: str = "auto", device: str | None = None) -> Any:
    """A transformers causal LM in eval mode: bf16 on a GPU and fp32 on the CPU unless `dtype` says otherwise."""
    import torch
    from transformers import AutoModelForCausalLM

    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    if dtype == "auto":
        torch_dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
    else:
        torch_dtype = getattr(torch, dtype)
    hf_model = AutoModelForCausalLM.from_pretrained(model, dtype=torch_dtype)
    return hf_model.to(device).eval()


def _eos_ids(model: Any, tokenizer: Any) -> list[int]:
    ids: list[int] = []
    gen_eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    for value in (gen_eos, tokenizer.eos_token_id):
        if value is None:
            continue
        for v in value if isinstance(value, (list, tuple)) else [value]:
            if v not in ids:
                ids.append(int(v))
    return ids


def generate_transformers(
    model: Any,
    tokenizer: Any,
    work: Sequence[WorkItem],
    *,
    temperature: float,
    top_p: float,
    max_tokens: int,
    batch_size: int,
    on_batch: Callable[[list[dict[str, Any]]], None],
    progress: bool = True,
) -> None:
    """Generate `work` with `model.generate` in batches of `batch_size` sequences (left padded), calling
    `on_batch(records)` after each batch."""
    import torch
    from tqdm.auto import tqdm

    eos_ids = _eos_ids(model, tokenizer)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (eos_ids[0] if eos_ids else 0)
    device = next(model.parameters()).device
    from transformers import GenerationConfig

    # A fresh config, so that the model's own generation defaults (top_k, repetition penalty, ...) do not leak in.
    sampling = {"do_sample": True, "temperature": temperature, "top_p": top_p, "top_k": 0} if temperature > 0 else {}
    generation_config = GenerationConfig(
        max_new_tokens=max_tokens, eos_token_id=eos_ids or None, pad_token_id=pad_id, **sampling
    )
    bar = tqdm(total=len(work), desc="generating", unit="seq", disable=not progress)
    try:
        for start in range(0, len(work), batch_size):
            batch = work[start : start + batch_size]
            width = max(len(w.prompt_ids) for w in batch)
            input_ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
            attention = torch.zeros((len(batch), width), dtype=torch.long)
            for row, w in enumerate(batch):
                input_ids[row, width - len(w.prompt_ids) :] = torch.tensor(w.prompt_ids, dtype=torch.long)
                attention[row, width - len(w.prompt_ids) :] = 1
            with torch.no_grad():
                out = model.generate(
                    input_ids=input_ids.to(device),
                    attention_mask=attention.to(device),
                    generation_config=generation_config,
                )
            records = []
            for row, w in enumerate(batch):
                new = out[row, width:].tolist()
                stop = next((i for i, t in enumerate(new) if t in eos_ids), None)
                tokens = new if stop is None else new[: stop + 1]
                records.append(
                    _record(w, tokenizer.decode(tokens, skip_special_tokens=True), len(tokens),
                            "length" if stop is None else "stop")
                )
            on_batch(records)
            bar.update(len(batch))
    finally:
        bar.close()


def generate_vllm(
    model: str,
    work: Sequence[WorkItem],
    *,
    temperature: float,
    top_p: float,
    max_tokens: int,
    seed: int,
    on_batch: Callable[[list[dict[str, Any]]], None],
    prompts_per_call: int = 64,
    tensor_parallel_size: int = 1,
    gpu_memory_utilization: float = 0.9,
    progress: bool = True,
) -> None:
    """Generate `work` with vLLM's offline engine, one call per `prompts_per_call` distinct prompts, calling
    `on_batch(records)` after each call. (Not exercised by the CPU test suite.)"""
    from tqdm.auto import tqdm
    from vllm import LLM, SamplingParams

    groups: dict[tuple[int, ...], list[WorkItem]] = {}
    for w in work:
        groups.setdefault(tuple(w.prompt_ids), []).append(w)
    llm = LLM(model=model, seed=seed, tensor_parallel_size=tensor_parallel_size,
              gpu_memory_utilization=gpu_memory_utilization)
    items = list(groups.values())
    bar = tqdm(total=len(work), desc="generating (vLLM)", unit="seq", disable=not progress)
    try:
        for start in range(0, len(items), prompts_per_call):
            chunk = items[start : start + prompts_per_call]
            params = [
                SamplingParams(n=len(ws), temperature=temperature, top_p=top_p, max_tokens=max_tokens,
                               seed=seed + start + i)
                for i, ws in enumerate(chunk)
            ]
            outputs = llm.generate([{"prompt_token_ids": ws[0].prompt_ids} for ws in chunk], params, use_tqdm=False)
            records = []
            for ws, out in zip(chunk, outputs, strict=True):
                for w, o in zip(ws, out.outputs, strict=True):
                    records.append(_record(w, o.text, len(o.token_ids), o.finish_reason or "stop"))
            on_batch(records)
            bar.update(sum(len(ws) for ws in chunk))
    finally:
        bar.close()
        del llm
        _free_gpu()


def _free_gpu() -> None:
    import gc

    gc.collect()
    with contextlib.suppress(Exception):
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()


def _record(w: WorkItem, completion: str, num_tokens: int, finish_reason: str) -> dict[str, Any]:
    dataset, index, sample = w.key
    return {
        "dataset": dataset,
        "index": index,
        "sample": sample,
        "prompt_hash": prompt_hash(w.prompt),
        "prompt": w.prompt,
        "completion": completion,
        "num_tokens": num_tokens,
        "finish_reason": finish_reason,
    }


def run_generation(
    work: Sequence[WorkItem],
    cache: GenerationCache,
    *,
    backend: str,
    model: str,
    tokenizer: Any,
    hf_model: Any = None,
    temperature: float,
    top_p: float,
    max_tokens: int,
    batch_size: int,
    seed: int,
    dtype: str = "auto",
    tensor_parallel_size: int = 1,
    gpu_memory_utilization: float = 0.9,
    progress: bool = True,
) -> Any:
    """Generate the items of `work` not yet in `cache`, appending each finished batch to it.

    Returns the transformers model it used (loaded when `hf_model` is None), or None for vLLM / nothing to do."""
    todo = [w for w in work if w.key not in cache]
    if not todo:
        return hf_model
    if backend == "vllm":
        generate_vllm(model, todo, temperature=temperature, top_p=top_p, max_tokens=max_tokens, seed=seed,
                      on_batch=cache.add, tensor_parallel_size=tensor_parallel_size,
                      gpu_memory_utilization=gpu_memory_utilization, progress=progress)
        return None
    import torch

    torch.manual_seed(seed + len(cache))  # a resumed run does not replay the first run's random stream
    if hf_model is None:
        hf_model = load_hf_model(model, dtype=dtype)
    generate_transformers(hf_model, tokenizer, todo, temperature=temperature, top_p=top_p, max_tokens=max_tokens,
                          batch_size=batch_size, on_batch=cache.add, progress=progress)
    return hf_model
