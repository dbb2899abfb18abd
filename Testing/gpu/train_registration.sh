#!/usr/bin/env bash
# One prepared GPU training call (docs/training.md, "GPU"): continue the registration stage from the
# latest weights at 256 in bf16 with a large batch for MINUTES, then return the run's checkpoint and
# exported weights in files of at most 15 MiB (reassemble with `cat NAME.part-* > NAME`).
#
#   OUT=/tmp/out bash Testing/gpu/train_registration.sh INIT [MINUTES] [BATCH] [DEVICE] [SIZE]
#
# INIT: the weights to start from (a .safetensors export, a bundled name, or a run's best.pt).
# Defaults: 8 minutes, batch 64, cuda, 256 px; data from ../shared/data/aanlib. Tested on the CPU with
# `... INIT 0.2 2 cpu 32`.
set -euo pipefail
cd "$(dirname "$0")/../.."
INIT=${1:?give the weights to start from}
MINUTES=${2:-8}
BATCH=${3:-64}
DEVICE=${4:-cuda}
SIZE=${5:-256}
OUT=${OUT:?set OUT to the folder that comes back}
RUN="$OUT/run"
python3 -c "import BSAFusionCore" 2>/dev/null || bash .ci/setup
if [ "$DEVICE" != "cpu" ]; then nvidia-smi --query-gpu=name,memory.total --format=csv > "$OUT/gpu.txt"; fi
python3 -m BSAFusionCore train --aanlib ../shared/data/aanlib --modality CT,PET,SPECT --stage registration \
    --init "$INIT" --run-dir "$RUN" --device "$DEVICE" --amp bf16 --image-size "$SIZE" --batch-size "$BATCH" \
    --epochs 1000 --lr 1e-4 --lr-min 1e-6 --flow-supervision 1 --mono-fraction 0.2 --synthetic-fraction 0.3 \
    --val-every 1 --checkpoint-every 100 --max-minutes "$MINUTES" --val-size 256 2>&1 | tee "$OUT/train.log"
if [ -f "$RUN/log.csv" ]; then cp "$RUN/log.csv" "$OUT/log.csv"; fi
CHECKPOINT="$RUN/best.pt"; [ -f "$CHECKPOINT" ] || CHECKPOINT="$RUN/last.pt"
for file in "$CHECKPOINT" "$RUN"/*.safetensors; do
    split -b 15M -d "$file" "$OUT/$(basename "$file").part-"
done
cp "$RUN"/*.md "$OUT/"
rm -rf "$RUN"
ls -la "$OUT"
