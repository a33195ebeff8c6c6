#!/usr/bin/env bash
# DSRL on one node of 8 GPUs with vLLM in COLOCATE mode: every training process also runs a vLLM engine (the bundled
# recipes' setting: tensor parallel 2, 40% of each GPU's memory for vLLM, the rest for ZeRO-3 training).
#
#   bash examples/vllm_colocate.sh                                   # Qwen3-4B, MATH, the paper's run
#   RECIPE=$(prerl-trl configs --recipe dsrl_qwen3_8b_math) bash examples/vllm_colocate.sh
#   NUM_GPUS=4 bash examples/vllm_colocate.sh --gradient_accumulation_steps 16   # flags go to prerl-trl train
#
# Recipe fields: use_vllm: true, vllm_mode: colocate, vllm_tensor_parallel_size: 2 (must divide the process count),
# vllm_gpu_memory_utilization: 0.4.
set -euo pipefail

RECIPE=${RECIPE:-$(prerl-trl configs --recipe dsrl_qwen3_4b_math)}
ACCELERATE_CONFIG=${ACCELERATE_CONFIG:-$(prerl-trl configs --accelerate zero3)}
NUM_GPUS=${NUM_GPUS:-$(nvidia-smi --list-gpus | wc -l)}

accelerate launch --config_file "$ACCELERATE_CONFIG" --num_processes "$NUM_GPUS" \
  -m prerl_trl train --config "$RECIPE" "$@"
