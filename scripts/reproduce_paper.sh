#!/usr/bin/env bash
# The RAR paper's Table 1 in one command: 4 datasets x 4 methods x 3 seeds with the reference presets, then NA, AA,
# IN and CO for every trained model, then the report (mean +- std over seeds).
#
#   bash scripts/reproduce_paper.sh hydra/launcher=slurm hydra.launcher.partition=gpu   # on a SLURM cluster
#   bash scripts/reproduce_paper.sh hydra/launcher=local_parallel                       # on one machine
#
# METHODS="natural pgd ig_norm ig_sum_norm erar" adds ERAR (rar_<dataset>_erar: ERAR's own settings on Flower-17,
# RAR's IG-SUM-NORM settings elsewhere). Extra arguments are passed to both sweeps (launcher, partition, ...).
# Datasets must be in ./data (or paths.data=...);
# add dataset.download=true to fetch MNIST, Fashion-MNIST, GTSRB and Flower-17 first. Re-running the script resumes
# unfinished training runs from their last.pt (SWEEP=<the same folder> keeps the run dirs).
set -euo pipefail
SWEEP=${SWEEP:-outputs/paper/$(date +%Y-%m-%d_%H-%M-%S)}
SEEDS=${SEEDS:-0,1,2}
METHODS=${METHODS:-natural pgd ig_norm ig_sum_norm}
presets=""
for dataset in mnist fashion_mnist gtsrb flower17; do
  for method in ${METHODS}; do
    presets+="${presets:+,}rar_${dataset}_${method}"
  done
done
attrobust train -m "+experiment=${presets}" "seed=${SEEDS}" "hydra.sweep.dir=${SWEEP}/train" "$@"
runs=$(find "${SWEEP}/train" -mindepth 2 -maxdepth 2 -name model.pt -printf '%h\n' | sort | paste -sd, -)
attrobust evaluate -m "checkpoint=${runs}" "hydra.sweep.dir=${SWEEP}/evaluate" "$@"
attrobust report "${SWEEP}"
