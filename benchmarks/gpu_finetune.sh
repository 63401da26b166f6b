#!/usr/bin/env bash
# The shipped weights' GPU stage (conf/experiment/diffuir_t_photos_gpu.yaml) in one command on one GPU, sized to
# fit a short GPU loan: a 300-step smoke run first (a broken environment fails in seconds; its end-to-end it/s
# sizes the real run), then the run itself with its steps fitted to TRAIN_S seconds (the one-cycle schedule
# follows) and a hard stop STOP_S (90) s later (trainer.max_time), then the export. Writes OUT/diffuir_t_photos/ (model.safetensors,
# config.yaml), OUT/metrics.csv (the loss curve) and OUT/train.log.
#   python -m src.data.photo_folder --out data/photos     # the clean photos (here: Debian packages)
#   TRAIN_S=270 benchmarks/gpu_finetune.sh /tmp/gpu_ft      # on the GPU machine
#   STEPS=3000 TRAIN_S=300 STOP_S=40 benchmarks/gpu_finetune.sh /tmp/gpu_ft2 model.init_from=weights/gpu1 model.optimizer.lr=5e-4
#     (STEPS: fixed steps instead of the smoke run's estimate; the hard stop stays at TRAIN_S + STOP_S seconds)
#   SMOKE_ONLY=1 TRAINER=cpu benchmarks/gpu_finetune.sh /tmp/ft_smoke   # the script end to end on a CPU
# PRECISION: 32 (default), bf16 (bf16-mixed autocast + channels-last) or auto (a smoke run of each; bf16 only where
# it is >= 1.15x faster; on the H200 with DiffUIR-T at 48 x 128² it was not: 3.76 vs 4.48 it/s, fp32 kept).
# RATE_FACTOR (1): the long run's it/s over the smoke run's (on the H200 9.0-9.4 it/s against 4.5-5.2 in 60-150-step
# smoke runs, whose warm-up weighs in their mean: ~1.7-2.1); trainer.max_time stops the run anyway.
# DATA_ROOT (data/photos): the clean photos; LOG_DIR (logs/gpu_finetune): the two runs' folders.
# Under an outer `timeout`, leave it 60 s beyond smoke + TRAIN_S + STOP_S: the export comes last, and a run cut off
# before it leaves only logs/gpu_finetune/main/checkpoints/ (export those with python -m src.export).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}
out=${1:?usage: benchmarks/gpu_finetune.sh OUT_DIR [hydra overrides...]}; shift
train_s=${TRAIN_S:-270} stop_s=${STOP_S:-90} trainer=${TRAINER:-gpu}
root=${DATA_ROOT:-data/photos} logs=${LOG_DIR:-logs/gpu_finetune}
mkdir -p "$out"
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
overrides=("$@")
run() {  # run NAME [overrides...]: one training run into LOG_DIR/NAME
  local name=$1; shift
  HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1 "$PY" -m src.train experiment=diffuir_t_photos_gpu trainer="$trainer" \
    data.root="$root" test=false logger=csv hydra.run.dir="$logs/$name" "$@" "${overrides[@]}"
}
if [ "$trainer" = cpu ]; then small=(data.num_workers=2 data.batch_size=2 data.patch_size=32); else small=(); fi
smoke() {  # smoke NAME [overrides...]: a short run; prints its end-to-end it/s (data loading, EMA, logging and the
  # warm-up steps included: an underestimate of the long run's rate, which RATE_FACTOR corrects)
  local name=$1; shift
  run "$name" trainer.max_steps=${SMOKE_STEPS:-300} "${small[@]}" "$@" > "$out/$name.log" 2>&1 \
    || { tail -40 "$out/$name.log" >&2; exit 1; }
  tr '\r' '\n' < "$out/$name.log" | grep -o '[0-9.]*it/s' | tail -1 | sed 's|it/s||'
}
bf16=(trainer.precision=bf16-mixed +model.channels_last=true)
start=$(date +%s)
case ${PRECISION:-32} in
  32) rate=$(smoke smoke); prec=() ;;
  bf16) rate=$(smoke smoke "${bf16[@]}"); prec=("${bf16[@]}") ;;
  auto)  # both smoke runs; bf16 autocast + channels-last only where it is at least 1.15x faster end to end
    rate32=$(smoke smoke "trainer.precision=32"); rate16=$(smoke smoke_bf16 "${bf16[@]}")
    echo "smoke runs: fp32 ${rate32:-?} it/s, bf16-mixed + channels-last ${rate16:-?} it/s"
    if "$PY" -c "import sys; sys.exit(0 if float('${rate16:-0}' or 0) > 1.15 * float('${rate32:-0}' or 0) else 1)"; then
      rate=$rate16; prec=("${bf16[@]}"); else rate=$rate32; prec=(); fi ;;
  *) echo "PRECISION must be 32, bf16 or auto" >&2; exit 2 ;;
esac
steps=${STEPS:-$("$PY" -c "print(max(50, int(float('${rate:-0}' or 0) * ${RATE_FACTOR:-1} * $train_s * 0.9)))")}
echo "smoke: $(( $(date +%s) - start )) s, ${rate:-?} it/s -> $steps steps for ${train_s} s ${prec[*]:-(fp32)}"
[ "${SMOKE_ONLY:-0}" = 1 ] && exit 0
start=$(date +%s)
run main trainer.max_steps="$steps" "${prec[@]}" \
  +trainer.max_time="$(printf '00:00:%02d:%02d' $(( (train_s + stop_s) / 60 )) $(( (train_s + stop_s) % 60 )))" \
  "${small[@]}" 2>&1 | tr '\r' '\n' | grep -v "it/s]" | tee "$out/train.log" | grep -E "steps|wall time|Error" || true
echo "training run: $(( $(date +%s) - start )) s"
"$PY" -m src.export --ckpt "$logs/main/checkpoints/last.ckpt" --format safetensors \
  --out "$out/diffuir_t_photos" --overwrite
cp "$(find "$logs/main" -name metrics.csv | head -1)" "$out/metrics.csv" 2>/dev/null || true
