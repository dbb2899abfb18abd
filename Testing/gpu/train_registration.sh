#!/usr/bin/env bash
# One prepared GPU training call (docs/training.md, "GPU"): for each modality, the registration stage at
# 256 in bf16 with a large batch, from that modality's registration (shipped, or $INIT_DIR), with the
# modality's curriculum of the shipped weights, MINUTES per modality; then the export with the shipped
# fusion of that modality (--fusion-from), so the result is a shippable file whenever its held-out
# figures beat what ships. Returns each run's log.csv, training log, model card and exported fp16 weights
# (about 22 MiB: split into files of at most 15 MiB, reassemble with `cat NAME.part-* > NAME`). A later
# call continues from those weights (INIT_DIR); the optimiser state is not returned.
#
#   OUT=/tmp/out bash Testing/gpu/train_registration.sh [MODALITIES] [MINUTES] [BATCH] [DEVICE] [SIZE] [EPOCHS]
#
# MODALITIES: comma-separated (default CT,PET,SPECT); each starts from $INIT_DIR/BSAFusion_<M>.safetensors
# when INIT_DIR is set, else from the shipped weights of that modality (their registration network).
# Defaults: 2.5 minutes each, batch 64, cuda, 256 px, 150 epochs (the cosine schedule's length; the time
# limit ends the run first unless the GPU is fast); data from ../shared/data/aanlib. Tested on the CPU with
# `OUT=/tmp/out bash Testing/gpu/train_registration.sh CT 0.3 2 cpu 32 2`.
set -euo pipefail
cd "$(dirname "$0")/../.."
MODALITIES=${1:-CT,PET,SPECT}
MINUTES=${2:-2.5}
BATCH=${3:-64}
DEVICE=${4:-cuda}
SIZE=${5:-256}
EPOCHS=${6:-150}
OUT=${OUT:?set OUT to the folder that comes back}
python3 -c "import BSAFusionCore" 2>/dev/null || bash .ci/setup
if [ "$DEVICE" != "cpu" ]; then nvidia-smi --query-gpu=name,memory.total --format=csv > "$OUT/gpu.txt"; fi
AMP=bf16; [ "$DEVICE" = "cpu" ] && AMP=auto
VAL_EVERY=$(( EPOCHS / 8 > 0 ? EPOCHS / 8 : 1 ))
for MODALITY in ${MODALITIES//,/ }; do
    case $MODALITY in  # the pair mix each shipped registration was trained with (docs/training.md)
        CT) MIX="--shapes-fraction 0.15 --aligned-fraction 0.4" ;;
        PET) MIX="--outline-fraction 0.5 --aligned-fraction 0.25" ;;
        *) MIX="--aligned-fraction 0.25" ;;
    esac
    INIT=$MODALITY; [ -n "${INIT_DIR:-}" ] && INIT="$INIT_DIR/BSAFusion_$MODALITY.safetensors"
    RUN="$OUT/run_$MODALITY"
    # shellcheck disable=SC2086
    python3 -m BSAFusionCore train --aanlib ../shared/data/aanlib --modality "$MODALITY" --stage registration \
        --init "$INIT" --run-dir "$RUN" --device "$DEVICE" --amp "$AMP" --image-size "$SIZE" \
        --batch-size "$BATCH" --epochs "$EPOCHS" --lr 1e-4 --lr-min 1e-5 --flow-supervision 1 $MIX \
        --ema-decay 0.99 --val-every "$VAL_EVERY" --checkpoint-every 100 \
        --max-minutes "$MINUTES" --val-size 256 2>&1 | tee "$OUT/train_$MODALITY.log"
    python3 -m BSAFusionCore train --run-dir "$RUN" --export "$RUN/BSAFusion_$MODALITY.safetensors" \
        --fusion-from "$MODALITY"
    split -b 15M -d "$RUN/BSAFusion_$MODALITY.safetensors" "$OUT/BSAFusion_$MODALITY.safetensors.part-"
    cp "$RUN/BSAFusion_$MODALITY.md" "$OUT/"
    if [ -f "$RUN/log.csv" ]; then cp "$RUN/log.csv" "$OUT/log_$MODALITY.csv"; fi
    rm -rf "$RUN"
done
ls -la "$OUT"
