#!/usr/bin/env bash
# Learning research on mini-MIAS (docs/real-data.md): import, then patient-split cross-validation runs.
# Usage: benchmarks/real_mias.sh STEP...
#   steps: import e1 e2 pretrain e3 paper v1 tta v1-contrast v1-resnet18 r18-contrast r18-none paper4 paper8
#          v1-seed1 ins150 r18c8 r18c8-pretext r18c8-pretext480 r18c8-pretext-e24 r18c8-pretext480-e24 recipe
#          recipe-x2 recipe-x3 r18c8-pretext-x3 rescore:RUN
# v1 is the first shipped recipe's 5-fold run (--normal-images 6; its flags pin that recipe's backbone, filter,
# epochs and no pretraining, so it runs as measured on the current file); e1-e3, paper and tta compare options
# around it. The recipe shipped now is r18c8-pretext (its step names every value that differs from v1).
# r18-contrast and r18-none (ResNet18, 30 epochs, with / without the contrast front end) score every film.
# paper4 and paper8: plaid train's defaults (the paper's 224-pixel recipe) for 4 and 8 epochs, 5 folds.
# v1-seed1: the first recipe with seed 1 (other folds, other sampling); ins150: 150 inserted clusters, 8 epochs.
# r18c8 / r18c8-pretext: ResNet18 + contrast, 8 epochs, without / with 240 steps of per-fold synthetic-cluster
# pretraining (pretrain_steps; r18c8-pretext480: 480 steps). SEED=1 runs them on seed 1's folds and sampling
# (output folder suffix -seed1). The -e24 steps train 24 epochs instead of 8. recipe: recipes/mini-mias.json
# exactly as the file stands; recipe-x2 resamples
# to 0.1 mm with 128-pixel patches (the same 12.8 mm), first 2 folds only. rescore:RUN
# rescores the fold models of WORK/RUN without and with flip TTA on the films the run scored and on every
# held-out film (benchmarks/rescore_crossval.py; every held-out film's TTA row goes to WORK/RUN/films-tta.json),
# and prints each fold's paper-protocol AUC over 1000 draws of its negatives; tta is rescore:v1.
# MIAS=path to mini-MIAS (default ../shared/data/mini-mias), WORK=output folder (default /tmp/plaid-mias).
set -euo pipefail
cd "$(dirname "$0")/.."
PY="$(./scripts/ensure_env.sh)/bin/python"
MIAS=${MIAS:-../shared/data/mini-mias}
WORK=${WORK:-/tmp/plaid-mias}
DATA=$WORK/data
export PLAID_OFFLINE=1 PYTHONPATH=$PWD/lib OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
plaid() { /usr/bin/time -f "%e s wall, %U s user CPU" "$PY" -m plaid.cli "$@"; }
SCORE=(--checkpoint last --normal-images 6 --no-progress)
V1=(--architecture resnet50 --input-filter none --epochs 4 --pretrain-steps 0 --no-tta-flips)
CHOOSE=(--folds 5 --only-folds 2 "${V1[@]}" "${SCORE[@]}")
ALL=(--folds 5 --checkpoint last --no-progress)
for step in "$@"; do
  case $step in
    import) plaid import mias "$MIAS/Info.txt" "$MIAS/images" "$DATA" ;;
    e1) plaid crossval "$DATA" --out "$WORK/e1-random-no-insertion" --recipe recipes/mini-mias.json \
          --inserted-positives 0 "${CHOOSE[@]}" ;;
    e2) plaid crossval "$DATA" --out "$WORK/e2-random-inserted" --recipe recipes/mini-mias.json "${CHOOSE[@]}" ;;
    pretrain) plaid pretrain "$DATA" --out "$WORK/pretrained-inserted.pth" --task inserted --patch-size 64 \
          --steps 40 --no-progress ;;
    e3) plaid crossval "$DATA" --out "$WORK/e3-pretrained-inserted" --recipe recipes/mini-mias.json \
          --weights "$WORK/pretrained-inserted.pth" "${CHOOSE[@]}" ;;
    paper) plaid crossval "$DATA" --out "$WORK/paper-defaults-4-epochs" --epochs 4 --folds 5 --only-folds 1 \
          "${SCORE[@]}" ;;
    v1) plaid crossval "$DATA" --out "$WORK/v1" --recipe recipes/mini-mias.json "${V1[@]}" --folds 5 "${SCORE[@]}" ;;
    tta) "$PY" benchmarks/rescore_crossval.py "$WORK/v1" "$DATA" ;;
    v1-contrast) plaid crossval "$DATA" --out "$WORK/v1-contrast" --recipe recipes/mini-mias.json "${V1[@]}" \
          --input-filter contrast --folds 5 "${SCORE[@]}" ;;
    v1-resnet18) plaid crossval "$DATA" --out "$WORK/v1-resnet18" --recipe recipes/mini-mias.json "${V1[@]}" \
          --architecture resnet18 --folds 5 "${SCORE[@]}" ;;
    r18-none|r18-contrast) plaid crossval "$DATA" --out "$WORK/$step-30" --recipe recipes/mini-mias.json \
          --architecture resnet18 --input-filter "${step#r18-}" --epochs 30 --pretrain-steps 0 --no-tta-flips \
          "${ALL[@]}" ;;
    v1-seed1) plaid crossval "$DATA" --out "$WORK/$step" --recipe recipes/mini-mias.json "${V1[@]}" --seed 1 \
          --folds 5 "${SCORE[@]}" ;;
    ins150) plaid crossval "$DATA" --out "$WORK/$step" --recipe recipes/mini-mias.json "${V1[@]}" --epochs 8 \
          --inserted-positives 150 --folds 5 "${SCORE[@]}" ;;
    r18c8|r18c8-pretext|r18c8-pretext480|r18c8-pretext-e24|r18c8-pretext480-e24)
          name=${step%-e24}; epochs=8; [ "$name" != "$step" ] && epochs=24
          steps=${name#r18c8-pretext}; steps=${steps:-240}; [ "$name" = r18c8 ] && steps=0
          plaid crossval "$DATA" --out "$WORK/$step${SEED:+-seed$SEED}" --recipe recipes/mini-mias.json \
          --architecture resnet18 --input-filter contrast --epochs "$epochs" --pretrain-steps "$steps" --no-tta-flips \
          --seed "${SEED:-0}" --folds 5 "${SCORE[@]}" ;;
    recipe) plaid crossval "$DATA" --out "$WORK/recipe${SEED:+-seed$SEED}" --recipe recipes/mini-mias.json \
          --seed "${SEED:-0}" --folds 5 "${SCORE[@]}" ;;
    recipe-x2) plaid crossval "$DATA" --out "$WORK/$step${SEED:+-seed$SEED}" --recipe recipes/mini-mias.json \
          --target-spacing-mm 0.1 --patch-size 128 --seed "${SEED:-0}" --folds 5 --only-folds 2 "${SCORE[@]}" ;;
    rescore:*) "$PY" benchmarks/rescore_crossval.py "$WORK/${step#rescore:}" "$DATA" \
          --films "$WORK/${step#rescore:}/films-tta.json" --paper-draws 1000 ;;
    recipe-x3|r18c8-pretext-x3)  # ensembles of seeds SEED..SEED+2 on one split per fold; 2 folds: members train on
          # 40 women each. r18c8-pretext-x3 pins the recipe shipped before (ResNet18, 240 pretext steps, 8 epochs)
          extra=(); [ "$step" != recipe-x3 ] && extra=(--architecture resnet18 --pretrain-steps 240 --epochs 8)
          plaid crossval "$DATA" --out "$WORK/$step${SEED:+-seed$SEED}" --recipe recipes/mini-mias.json "${extra[@]}" \
          --ensemble-members 3 --seed "${SEED:-0}" --folds 2 --normal-images 16 --no-progress ;;
    paper4|paper8) plaid crossval "$DATA" --out "$WORK/$step" --epochs "${step#paper}" --folds 5 "${SCORE[@]}" ;;
    *) echo "unknown step $step" >&2; exit 2 ;;
  esac
done
