#!/usr/bin/env bash
# Every attribution-robust training method on mnist_mini under one protocol: train each mnist_mini_<method> preset for
# each seed, evaluate every model with the same attack and controls (eval.protocol=robust: random starts, the strict
# columns as the headline, LENS recall), then one report (mean +- std over seeds, both accountings, moved counts).
#
#   bash scripts/compare_methods.sh                                   # all methods, seed 0, on this machine
#   SEEDS=0,1 METHODS="ig_sum_norm erar lga" bash scripts/compare_methods.sh
#   TRAIN_ARGS="train.epochs=1 train.num_examples=100" EVAL_ARGS="eval.num_examples=8" bash scripts/compare_methods.sh
#
# TRAIN_ARGS and EVAL_ARGS are extra overrides of each sweep; other arguments go to both (a launcher, say).
set -euo pipefail
SWEEP=${SWEEP:-outputs/methods/$(date +%Y-%m-%d_%H-%M-%S)}
SEEDS=${SEEDS:-0}
METHODS=${METHODS:-natural pgd ig_norm ig_sum_norm erar lga advaat igr art r2et}
PROTOCOL=${PROTOCOL:-robust}
presets=""
for method in ${METHODS}; do
  presets+="${presets:+,}mnist_mini_${method}"
done
# shellcheck disable=SC2086  # TRAIN_ARGS / EVAL_ARGS hold several overrides
attrobust train -m "+experiment=${presets}" "seed=${SEEDS}" "hydra.sweep.dir=${SWEEP}/train" \
  ${TRAIN_ARGS:-} "$@"
runs=$(find "${SWEEP}/train" -mindepth 2 -maxdepth 2 -name model.pt -printf '%h\n' | sort | paste -sd, -)
# shellcheck disable=SC2086
attrobust evaluate -m "checkpoint=${runs}" "eval.protocol=${PROTOCOL}" \
  'eval.metrics=[topk_intersection,kendall,spearman,center_shift,lens_recall]' "hydra.sweep.dir=${SWEEP}/evaluate" \
  ${EVAL_ARGS:-} "$@"
attrobust report "${SWEEP}"
