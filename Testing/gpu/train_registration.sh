#!/usr/bin/env bash
# One prepared GPU training call (docs/training.md, "GPU"): for each modality, the registration stage
# with the features frozen (--freeze-features) from that modality's weights, at 256 in bf16 with a
# large batch, MINUTES per modality; returns each run's log, model card and exported fp16 weights
# (about 19 MiB: split into files of at most 15 MiB, reassemble with `cat NAME.part-* > NAME`). A
# later run continues from those weights (INIT_DIR); the optimiser state is not returned.
#
#   OUT=/tmp/out bash Testing/gpu/train_registration.sh [MODALITIES] [MINUTES] [BATCH] [DEVICE] [SIZE]
#
# MODALITIES: comma-separated (default CT,PET,SPECT); each starts from $INIT_DIR/BSAFusion_<M>.safetensors
# when INIT_DIR is set, else from the shipped weights of that modality. Defaults: 2.5 minutes each,
# batch 64, cuda, 256 px; data from ../shared/data/aanlib. Tested on the CPU with
# `OUT=/tmp/out bash Testing/gpu/train_registration.sh CT 0.2 2 cpu 32`.
set -euo pipefail
cd "$(dirname "$0")/../.."
MODALITIES=${1:-CT,PET,SPECT}
MINUTES=${2:-2.5}
BATCH=${3:-64}
DEVICE=${4:-cuda}
SIZE=${5:-256}
OUT=${OUT:?set OUT to the folder that comes back}
python3 -c "import BSAFusionCore" 2>/dev/null || bash .ci/setup
if [ "$DEVICE" != "cpu" ]; then nvidia-smi --query-gpu=name,memory.total --format=csv > "$OUT/gpu.txt"; fi
AMP=bf16; [ "$DEVICE" = "cpu" ] && AMP=auto
for MODALITY in ${MODALITIES//,/ }; do
    INIT=$MODALITY; [ -n "${INIT_DIR:-}" ] && INIT="$INIT_DIR/BSAFusion_$MODALITY.safetensors"
    RUN="$OUT/run_$MODALITY"
    python3 -m BSAFusionCore train --aanlib ../shared/data/aanlib --modality "$MODALITY" --stage registration \
        --freeze-features --init "$INIT" --run-dir "$RUN" --device "$DEVICE" --amp "$AMP" --image-size "$SIZE" \
        --batch-size "$BATCH" --epochs 1000 --lr 2e-4 --lr-min 2e-6 --flow-supervision 1 --pretrain-steps 0 \
        --synthetic-fraction 0.2 --shapes-fraction 0.3 --val-every 1 --checkpoint-every 100 \
        --max-minutes "$MINUTES" --val-size 256 2>&1 | tee "$OUT/train_$MODALITY.log"
    python3 -m BSAFusionCore train --run-dir "$RUN" --export "$RUN/BSAFusion_$MODALITY.safetensors" --export-size 256
    split -b 15M -d "$RUN/BSAFusion_$MODALITY.safetensors" "$OUT/BSAFusion_$MODALITY.safetensors.part-"
    cp "$RUN/BSAFusion_$MODALITY.md" "$OUT/"
    if [ -f "$RUN/log.csv" ]; then cp "$RUN/log.csv" "$OUT/log_$MODALITY.csv"; fi
    rm -rf "$RUN"
done
ls -la "$OUT"
