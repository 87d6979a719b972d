#!/usr/bin/env bash
# The mini leaderboard: every mnist_mini_<method> preset for each seed, each model evaluated under one protocol on the
# same test images (NA, AA under PGD-40 and the attack on explanations with its random controls; then NA and AA under
# AutoAttack), then `attrobust leaderboard` and `attrobust compare` over the seed-0 models.
#
#   bash scripts/mini_leaderboard.sh                         # everything: 14 presets x 3 seeds (many CPU hours)
#   SEEDS="0" METHODS="natural pgd trades" JOBS=1 bash scripts/mini_leaderboard.sh
#   JOBS_FILE=my_jobs.txt bash scripts/mini_leaderboard.sh   # "<method> <seed>" per line, in this order
#
# Jobs ("<method> <seed>") run JOBS at a time (one thread each: on 2 cores two one-thread jobs do more work than one
# two-thread job on these small models). A job whose model or entry is already there is skipped: rerun to resume.
# The protocol (PROTOCOL_ARGS) is cheaper than eval.protocol=robust's defaults so that every model gets it alike: IG
# with 10 points, the top-k attack from a random start, 20 steps of 0.025 at eps 0.3, one run, both random controls.
set -euo pipefail
SWEEP=${SWEEP:-outputs/leaderboard_mini}
SEEDS=${SEEDS:-0 1 2}
METHODS=${METHODS:-natural pgd trades ig_norm ig_sum_norm input_grad erar lga advaat igr art r2et lipschitz_natural
lipschitz_hkr}
JOBS=${JOBS:-2}
IMAGES=${IMAGES:-200}
PROTOCOL_ARGS=${PROTOCOL_ARGS:-eval.protocol=robust explainer.steps=10 attribution_attack.steps=20
attribution_attack.step_size=0.025 attribution_attack.restarts=1}

job() {  # one model: train it, evaluate it with attributions under PGD, then NA and AA under AutoAttack
  local method=$1 seed=$2 run="${SWEEP}/runs/$1_seed$2"
  mkdir -p "${run}"
  if [ ! -f "${run}/model.pt" ]; then
    attrobust train "+experiment=mnist_mini_${method}" "seed=${seed}" "hydra.run.dir=${run}" >"${run}.train.log" 2>&1
  fi
  # a training cut short leaves last.pt alone (evaluate refuses such a run): say so, and go on
  [ -f "${run}/model.pt" ] || { echo "$(date +%T) ${method} seed ${seed}: no model.pt (see ${run}.train.log)"; return 1; }
  if [ ! -f "${run}/evaluate/pgd/entry.json" ]; then
    # shellcheck disable=SC2086  # PROTOCOL_ARGS holds several overrides
    attrobust evaluate "checkpoint=${run}" "eval.num_examples=${IMAGES}" ${PROTOCOL_ARGS} \
      "hydra.run.dir=${run}/evaluate/pgd" >"${run}.pgd.log" 2>&1
  fi
  if [ ! -f "${run}/evaluate/autoattack/entry.json" ]; then
    # shellcheck disable=SC2086
    attrobust evaluate "checkpoint=${run}" "eval.num_examples=${IMAGES}" ${PROTOCOL_ARGS} attack=autoattack \
      attributions=false "hydra.run.dir=${run}/evaluate/autoattack" >"${run}.autoattack.log" 2>&1
  fi
  echo "$(date +%T) done ${method} seed ${seed}"
}
export -f job
export SWEEP IMAGES PROTOCOL_ARGS OMP_NUM_THREADS=1 MKL_NUM_THREADS=1

if [ -n "${JOBS_FILE:-}" ]; then
  jobs=$(cat "${JOBS_FILE}")
else
  jobs=$(for seed in ${SEEDS}; do for method in ${METHODS}; do echo "${method} ${seed}"; done; done)
fi
echo "${jobs}" | xargs -r -P "${JOBS}" -L 1 bash -c 'job "$0" "$1" || echo "$(date +%T) FAILED $0 seed $1"'

attrobust leaderboard "${SWEEP}/runs" --out "${SWEEP}/leaderboard"
attrobust leaderboard "${SWEEP}/runs" --by method --out "${SWEEP}/leaderboard_by_method"
# The paired comparisons: the seed-0 models, then every method with all SEEDS over its seeds.
evaluated() {  # the attributions evaluations of seed $1
  find "${SWEEP}/runs" -path "*_seed$1/evaluate/pgd/entry.json" -printf '%h\n' | sort
}
firsts=$(evaluated 0)
if [ "$(echo "${firsts}" | wc -w)" -ge 2 ]; then
  # shellcheck disable=SC2086  # one folder per seed-0 model
  attrobust compare ${firsts} --out "${SWEEP}/compare"
fi
groups=""
for method in ${METHODS}; do
  folders=$(for seed in ${SEEDS}; do evaluated "${seed}" | grep "/runs/${method}_seed${seed}/" || true; done |
    paste -sd, -)
  if [ "$(echo "${folders}" | tr , ' ' | wc -w)" -eq "$(echo "${SEEDS}" | wc -w)" ]; then
    groups+=" ${folders}"
  fi
done
if [ "$(echo "${groups}" | wc -w)" -ge 2 ]; then
  # shellcheck disable=SC2086  # one argument per method: its seeds' folders joined by commas
  attrobust compare ${groups} --out "${SWEEP}/compare_seeds"
fi
