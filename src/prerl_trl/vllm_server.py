"""Fail fast when training in vLLM server mode and no `trl vllm-serve` answers.

TRL's client retries for `vllm_server_timeout` seconds (240 by default) before it gives up, and its message does not
say how to start the server. `check_vllm_server` asks the server's `/health` endpoint for a few seconds first and
raises one `ConnectionError` that names the URL and the command that starts the server.
"""

from __future__ import annotations

import os
import time
import urllib.error
import urllib.request
from typing import Any
from urllib.parse import urlparse

DEFAULT_WAIT_S = 10.0


def vllm_server_url(args: Any) -> str:
    """The base URL TRL's client connects to: `vllm_server_base_url`, else `http://{vllm_server_host}:{port}`."""
    base_url = getattr(args, "vllm_server_base_url", None)
    if base_url:
        return base_url.rstrip("/")
    return f"http://{getattr(args, 'vllm_server_host', '0.0.0.0')}:{getattr(args, 'vllm_server_port', 8000)}"


def _is_main_process() -> bool:
    """Only the main process talks to the server (as in TRL); other nodes may not reach its host at all."""
    return int(os.environ.get("RANK", "0")) == 0


def check_vllm_server(args: Any, model: str | None = None, wait_s: float | None = None) -> None:
    """Raise `ConnectionError` unless the vLLM server of `args` answers `GET /health` within `wait_s` seconds.

    Does nothing unless `args.use_vllm` and `args.vllm_mode == "server"`, and on processes other than the main one
    (`RANK` > 0). `model` (the model being trained) only fills in the suggested `trl vllm-serve` command. `wait_s`
    defaults to `DEFAULT_WAIT_S`: `trl vllm-serve` opens its port only once the model is loaded, so start training
    after the server is up (examples/vllm_server.sh waits for it).
    """
    wait_s = DEFAULT_WAIT_S if wait_s is None else wait_s
    if not getattr(args, "use_vllm", False) or getattr(args, "vllm_mode", "server") != "server":
        return
    if not _is_main_process():
        return
    url = vllm_server_url(args)
    deadline = time.monotonic() + wait_s
    while True:
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=max(1.0, min(5.0, wait_s))) as response:
                if response.status == 200:
                    return
                reason = f"HTTP {response.status}"
        except urllib.error.HTTPError as error:
            reason = f"HTTP {error.code}"
        except (urllib.error.URLError, OSError) as error:
            reason = str(getattr(error, "reason", error))
        if time.monotonic() >= deadline:
            break
        time.sleep(min(1.0, max(0.0, deadline - time.monotonic())))
    port = urlparse(url).port or 8000
    raise ConnectionError(
        f"vllm_mode=server: no vLLM server answers at {url}/health ({reason}) after {wait_s:.0f} s. Start one first "
        f"on GPUs that training does not use, e.g. `CUDA_VISIBLE_DEVICES=7 trl vllm-serve --model "
        f"{model or '<model_name_or_path>'} --port {port}`, wait until it logs 'Application startup complete', then "
        "launch training (examples/vllm_server.sh does both); or set vllm_server_base_url / vllm_server_host / "
        "vllm_server_port to where it runs, or use vllm_mode: colocate."
    )
