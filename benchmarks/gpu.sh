#!/usr/bin/env bash
# GPU benchmark of issue 12 (item 4): at most 8 minutes on one H100/H200-class GPU. Writes
# experiments/bench/gpu.{md,csv}: DiffUIR-L training samples/s at 256² (fp32, bf16, channels-last, compile, all
# together), the DiffUIR-L 3-step sampler at 256²/512², Diff-Restorer stage 1 (20 UniPC steps) at 512² with
# full-size random SD-1.5-shaped networks: latency and peak memory. See benchmarks/gpu_bench.py.
#   benchmarks/gpu.sh                 # on the GPU machine (make setup first, or PY=python)
#   benchmarks/gpu.sh --smoke --out /tmp/gpu_smoke   # tiny sizes on the CPU: checks the script end to end
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python )}
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
# 480 s hard stop; the script's own --budget-s (450 s) skips sections that would not fit
exec timeout 480 env HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1 "$PY" -m benchmarks.gpu_bench "$@"
