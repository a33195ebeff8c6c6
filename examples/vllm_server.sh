#!/usr/bin/env bash
# DSRL on one node of 8 GPUs with vLLM in SERVER mode: `trl vllm-serve` generates on some GPUs, training runs on the
# others and asks the server for rollouts (weights are pushed to the server after every update).
#
#   bash examples/vllm_server.sh                       # Qwen3-4B, MATH: vLLM on GPUs 6,7, training on GPUs 0-5
#   VLLM_GPUS=7 TRAIN_GPUS=0,1,2,3,4,5,6 bash examples/vllm_server.sh --max_steps 100   # flags go to prerl-trl train
#
# The recipe fields for server mode (given below as flags, so the bundled colocate recipe runs unchanged):
#   use_vllm: true
#   vllm_mode: server
#   vllm_server_host: 127.0.0.1      # or vllm_server_base_url: http://host:port
#   vllm_server_port: 8000
# Batch: 6 training GPUs x per_device_train_batch_size 16 x gradient_accumulation_steps 8 = 768 rollouts per step
# (96 prompts x 8). The paper's 128 prompts x 8 needs a process count that divides 1024 (4 training GPUs with
# gradient_accumulation_steps 16, or colocate mode on all 8: examples/vllm_colocate.sh).
set -euo pipefail

RECIPE=${RECIPE:-$(prerl-trl configs --recipe dsrl_qwen3_4b_math)}
MODEL=${MODEL:-Qwen/Qwen3-4B}
VLLM_GPUS=${VLLM_GPUS:-6,7}
TRAIN_GPUS=${TRAIN_GPUS:-0,1,2,3,4,5}
VLLM_PORT=${VLLM_PORT:-8000}
ACCELERATE_CONFIG=${ACCELERATE_CONFIG:-$(prerl-trl configs --accelerate zero3)}
LOG_DIR=${LOG_DIR:-outputs/logs}

count() { local IFS=,; local items; read -r -a items <<< "$1"; echo "${#items[@]}"; }
mkdir -p "$LOG_DIR"

# 1. The generation server: data parallel over its GPUs (a 4B model fits one GPU; use --tensor_parallel_size for
#    bigger ones). It opens its port only once the model is loaded.
CUDA_VISIBLE_DEVICES=$VLLM_GPUS trl vllm-serve --model "$MODEL" --port "$VLLM_PORT" \
  --data_parallel_size "$(count "$VLLM_GPUS")" --max_model_len 9216 --gpu_memory_utilization 0.9 \
  > "$LOG_DIR/vllm_serve.log" 2>&1 &
SERVER_PID=$!
trap 'kill "$SERVER_PID" 2>/dev/null || true' EXIT

# 2. Wait for it (prerl-trl train itself gives up after a few seconds when nothing answers).
echo "Waiting for trl vllm-serve on port $VLLM_PORT (log: $LOG_DIR/vllm_serve.log) ..."
until curl -sf "http://127.0.0.1:$VLLM_PORT/health" > /dev/null; do
  if ! kill -0 "$SERVER_PID" 2>/dev/null; then
    echo "trl vllm-serve exited; see $LOG_DIR/vllm_serve.log" >&2
    exit 1
  fi
  sleep 5
done

# 3. Training on the other GPUs.
CUDA_VISIBLE_DEVICES=$TRAIN_GPUS accelerate launch --config_file "$ACCELERATE_CONFIG" \
  --num_processes "$(count "$TRAIN_GPUS")" \
  -m prerl_trl train --config "$RECIPE" --model_name_or_path "$MODEL" \
  --use_vllm true --vllm_mode server --vllm_server_host 127.0.0.1 --vllm_server_port "$VLLM_PORT" \
  --per_device_train_batch_size 16 --gradient_accumulation_steps 8 \
  "$@"
