#!/usr/bin/env bash
# Miniature v3 in the protocol's fixed order (README, "Miniature v3"): base 0 seed 1, base 1 seed 1, base 0 seed 2,
# ...; each call runs GRPO and DSRL of one base and seed side by side (1 torch thread each), and adds them to
# results/cpu-v3/pretrain-seed-BASE/results.json. At STOP (UTC, default 16:25) the call in progress is stopped and
# left out. Then: python -m benchmarks.miniature.v3 benchmarks/miniature/results/cpu-v3
set -u
STOP=${STOP:-16:25}
SEEDS=${SEEDS:-"1 2 3 4 5 6 7 8 9 10"}
stop_at=$(date -u -d "$STOP" +%s)
for seed in $SEEDS; do
  for base in 0 1; do
    left=$(( stop_at - $(date -u +%s) ))
    if (( left <= 60 )); then echo "[v3] $(date -u +%T) stop time reached before base $base seed $seed"; exit 0; fi
    echo "[v3] $(date -u +%T) base $base seed $seed (at most $left s)"
    timeout "$left" python -m benchmarks.miniature run --preset cpu-v3 --pretrain-seed "$base" --seeds "$seed" \
      --methods grpo dsrl --jobs 2 --threads 1
    rc=$?
    if (( rc == 124 )); then echo "[v3] $(date -u +%T) stopped at $STOP during base $base seed $seed (left out)"; exit 0; fi
    if (( rc != 0 )); then echo "[v3] base $base seed $seed failed with $rc"; exit "$rc"; fi
  done
done
