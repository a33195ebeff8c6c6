"""vLLM server mode without a server: training fails within seconds, naming the URL and how to start the server."""

from __future__ import annotations

import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer
from types import SimpleNamespace

import pytest

from prerl_trl import vllm_server
from prerl_trl.cli import main
from prerl_trl.vllm_server import check_vllm_server, vllm_server_url


def closed_port() -> int:
    """A local port where nothing listens (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def server_args(port: int, **overrides) -> SimpleNamespace:
    values = dict(use_vllm=True, vllm_mode="server", vllm_server_base_url=None, vllm_server_host="127.0.0.1",
                  vllm_server_port=port)
    return SimpleNamespace(**{**values, **overrides})


class _Health(BaseHTTPRequestHandler):
    status = 200

    def do_GET(self):  # noqa: N802 (http.server's name)
        self.send_response(self.status if self.path == "/health" else 404)
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def health_server():
    """A local HTTP server answering GET /health with `_Health.status`; yields its port."""
    server = HTTPServer(("127.0.0.1", 0), _Health)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def test_url_is_the_one_trl_connects_to():
    assert vllm_server_url(server_args(1234)) == "http://127.0.0.1:1234"
    assert vllm_server_url(server_args(1234, vllm_server_base_url="http://node7:9000/")) == "http://node7:9000"


def test_closed_port_fails_within_seconds_naming_url_and_command():
    port = closed_port()
    started = time.monotonic()
    with pytest.raises(ConnectionError) as caught:
        check_vllm_server(server_args(port), model="Qwen/Qwen3-4B-Base", wait_s=1.0)
    assert time.monotonic() - started < 30  # hang guard (TRL alone would retry for 240 s)
    message = str(caught.value)
    assert f"http://127.0.0.1:{port}/health" in message
    assert f"trl vllm-serve --model Qwen/Qwen3-4B-Base --port {port}" in message


def test_running_server_passes_and_a_wrong_one_is_named(health_server, monkeypatch):
    check_vllm_server(server_args(health_server), wait_s=1.0)  # answers 200: no error
    monkeypatch.setattr(_Health, "status", 503)
    with pytest.raises(ConnectionError, match="HTTP 503"):
        check_vllm_server(server_args(health_server), wait_s=0.5)


@pytest.mark.parametrize(
    "overrides", [dict(use_vllm=False), dict(vllm_mode="colocate")], ids=["no-vllm", "colocate"]
)
def test_nothing_is_checked_outside_server_mode(overrides):
    check_vllm_server(server_args(closed_port(), **overrides), wait_s=0.1)


def test_only_the_main_process_checks(monkeypatch):
    monkeypatch.setenv("RANK", "1")
    check_vllm_server(server_args(closed_port()), wait_s=0.1)


def test_cli_train_in_server_mode_without_server_is_one_line(tiny_model_dir, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(vllm_server, "DEFAULT_WAIT_S", 1.0)
    port = closed_port()
    started = time.monotonic()
    code = main([
        "train", "--model_name_or_path", tiny_model_dir, "--output_dir", str(tmp_path / "out"),
        "--use_vllm", "true", "--vllm_mode", "server", "--vllm_server_host", "127.0.0.1",
        "--vllm_server_port", str(port), "--use_cpu", "true", "--bf16", "false", "--report_to", "none",
    ])
    assert time.monotonic() - started < 60
    assert code == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("prerl-trl train failed: ConnectionError:") and "\n" not in err
    assert f"127.0.0.1:{port}" in err and "trl vllm-serve" in err
