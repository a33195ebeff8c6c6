#!/usr/bin/env bash
# The distributed path on a laptop: DSRL with 2 CPU processes (gloo) on the tiny offline model and the toy task,
# through the same `prerl-trl train` as on GPUs. A few minutes on 2 cores; nothing is downloaded.
#
#   bash examples/cpu_torchrun.sh                 # 2 processes, 6 steps, switch at step 3, output in outputs/cpu-dsrl
#   NPROC=4 bash examples/cpu_torchrun.sh --max_steps 10   # flags go to prerl-trl train
#
# (`accelerate launch --cpu --num_processes 2` starts only one process: use torchrun.)
set -euo pipefail

NPROC=${NPROC:-2}
WORK=${WORK:-outputs/cpu-dsrl}
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
mkdir -p "$WORK"

# The tiny model and the toy task as a jsonl file (problem, answer), built offline.
python - "$WORK" <<'PY'
import json, sys
from pathlib import Path
from prerl_trl.tiny import build_tiny_model, toy_problems

work = Path(sys.argv[1])
if not (work / "model" / "config.json").exists():
    build_tiny_model(work / "model", warmup_steps=230, warmup_noise=0.0, pretrain_rows=4)
with open(work / "toy.jsonl", "w") as f:
    for question, answer in toy_problems() * 8:
        f.write(json.dumps({"problem": question, "answer": answer}) + "\n")
PY

torchrun --nproc_per_node "$NPROC" -m prerl_trl train \
  --model_name_or_path "$WORK/model" --dataset_name "$WORK/toy.jsonl" --output_dir "$WORK/run" \
  --trainer dsrl --dsrl_switch_step 3 --max_steps 6 \
  --per_device_train_batch_size 8 --num_generations 4 --max_completion_length 8 --learning_rate 4e-4 \
  --system_prompt 'Put the answer in \boxed{}.' \
  --use_cpu true --bf16 false --logging_steps 1 --report_to none --save_strategy no \
  "$@"
