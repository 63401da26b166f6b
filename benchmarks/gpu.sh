#!/usr/bin/env bash
# GPU benchmark of issues 12 and 18: at most 8 minutes on one H100/H200-class GPU. Writes
# experiments/bench/gpu.{md,csv}: DiffUIR-L training samples/s at 256² (fp32, bf16, channels-last, compile, all
# together), the DiffUIR-L 3-step sampler at 256²/512², Diff-Restorer stage 1 (20 UniPC steps) at 512² with
# full-size random SD-1.5-shaped networks: latency and peak memory (benchmarks/gpu_bench.py, 330 s); then whole
# photos through `python -m src.restore --device cuda` (1, 4 and 12 MP, DiffUIR-T shipped and -L random, fp32 and
# bf16 autocast; benchmarks/photo_speed.py, 120 s) -> experiments/bench/photo_speed_gpu.{md,csv}.
#   benchmarks/gpu.sh                 # on the GPU machine (make setup first, or PY=python)
#   benchmarks/gpu.sh --smoke --out /tmp/gpu_smoke   # tiny sizes on the CPU: checks the script end to end
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python )}
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
smoke=0 out=experiments/bench/gpu prev=
for arg in "$@"; do
  [ "$arg" = --smoke ] && smoke=1
  [ "$prev" = --out ] && out=$arg
  prev=$arg
done
# hard stops: 360 s for gpu_bench (its own --budget-s 330 skips sections that would not fit), 120 s for the photos
timeout 360 env HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1 "$PY" -m benchmarks.gpu_bench --budget-s 330 "$@"
if [ "$smoke" = 1 ]; then  # a shared CPU: no hard stop worth having
  photo_args=(--smoke --device cpu --threads 1) photo_stop=900
else
  photo_args=(--device cuda --sizes T L --mp 1 4 12 --precision 32 bf16 --timeout 60) photo_stop=120
fi
exec timeout $photo_stop env HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1 "$PY" -m benchmarks.photo_speed "${photo_args[@]}" \
  --out "$(dirname "$out")/photo_speed_$(basename "$out")"
