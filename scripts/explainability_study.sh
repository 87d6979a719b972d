#!/usr/bin/env bash
# The explainability study of issue 30 in one command, after Nourelahi et al. ("How explainable are adversarially-
# robust CNNs?", 2022) at mnist_mini scale: models of ALGOS (training algorithms) x ARCHS (architectures), each
# evaluated for natural and adversarial accuracy, accuracy under every corruption, and, with every explainer,
# faithfulness (insertion, deletion), attribution robustness under the top-k attack and under random noise (its two
# random controls run; the report reads random_noise), and the model-randomisation sanity check; then
# `scripts/study_report.py`, which answers the paper's five findings.
#
#   bash scripts/explainability_study.sh                                 # 3 x 3 models, every explainer (CPU hours)
#   ALGOS="natural trades" ARCHS="madry_cnn" IMAGES=8 bash scripts/explainability_study.sh
#   PHASES=train bash scripts/explainability_study.sh                     # the phases: train evaluate report
#
# A trained model or a finished evaluation (its evaluation.json) already there is kept: rerun to resume (with the same
# settings: the report warns when an explainer's evaluations differ); the report is written again. Jobs run JOBS at a
# time, one thread each; the script exits non-zero when a training or evaluation failed (the report still runs).
# The attack and the perturbation explainers run cheaper than their defaults so that every model gets every
# explainer alike on a CPU (STUDY_ARGS and explainer_args below; the report lists them). PYTHON runs the report.
set -euo pipefail
set -f  # no globbing: overrides such as eval.faithfulness=[insertion,deletion] stay as written
STUDY=${STUDY:-outputs/study_mini}
ALGOS=${ALGOS:-natural trades input_grad}
ARCHS=${ARCHS:-madry_cnn rar_resnet_flower vit}
EXPLAINERS=${EXPLAINERS:-gradient grad_x_input ig smoothgrad gradient_shap deeplift lrp gradcam gradcam_pp layercam
scorecam occlusion rise lime kernel_shap}
VIT_EXPLAINERS=${VIT_EXPLAINERS:-attention_rollout attention_gradient}  # on the ViT only: they read its attention
PHASES=${PHASES:-train evaluate report}
JOBS=${JOBS:-2}
SEED=${SEED:-0}
PYTHON=${PYTHON:-python3}
IMAGES=${IMAGES:-16}          # test images per explainer evaluation (the attack, faithfulness and the sanity check)
OOD_IMAGES=${OOD_IMAGES:-500} # test images for NA, AA and the corruptions
CORRUPTIONS=${CORRUPTIONS:-[brightness,canny_edges,contrast,dotted_line,fog,gaussian_blur,gaussian_noise,glass_blur,\
impulse_noise,motion_blur,occluding_patch,rotate,scale,shear,shot_noise,spatter,stripe,translate,zigzag,\
\{name:compose,of:[rotate,gaussian_noise]\},\{name:compose,of:[scale,contrast]\}]}
STUDY_ARGS=${STUDY_ARGS:-eval.protocol=robust attribution_attack.steps=5 attribution_attack.step_size=0.06
attribution_attack.restarts=1 attribution_attack.probes=4 eval.faithfulness=[insertion,deletion]
eval.randomisation=[spearman]}

train_args() {  # the training overrides of algorithm $1 on architecture $2
  local args="+experiment=mnist_mini_$1 model=$2"
  # TRADES on the ViT at Adam 1e-3 does not leave chance accuracy in 10 epochs; at 5e-4 it does
  if [ "$1" = trades ] && [ "$2" = vit ]; then args+=" optim.lr=5e-4"; fi
  echo "${args}"
}

explainer_args() {  # the study's settings of explainer $1: IG and the sampling explainers at a CPU's budget
  case "$1" in
    ig) echo "explainer.steps=10" ;;
    smoothgrad) echo "explainer.samples=20" ;;
    gradient_shap) echo "explainer.samples=10" ;;
    rise) echo "explainer.masks=300" ;;
    lime | kernel_shap) echo "explainer.samples=100" ;;
    *) echo "" ;;
  esac
}

train() {  # one model: algorithm $1, architecture $2
  local run="${STUDY}/runs/$1_$2"
  mkdir -p "${run}"
  if [ ! -f "${run}/model.pt" ]; then
    # shellcheck disable=SC2046  # train_args holds several overrides
    attrobust train $(train_args "$1" "$2") "seed=${SEED}" "hydra.run.dir=${run}" >"${run}.train.log" 2>&1 ||
      { echo "$(date +%T) FAILED training $1 $2 (see ${run}.train.log)"; return 1; }
  fi
  echo "$(date +%T) trained $1 $2"
}

evaluate() {  # model $1 (a run folder) with explainer $2, or "ood": NA, AA and the corruptions
  local run=$1 name=$2 out="$1/study/$2"
  [ -f "${run}/model.pt" ] || return 0  # a training cut short leaves last.pt: evaluate finished models only
  [ -f "${out}/evaluation.json" ] && return 0  # written last: a finished evaluation
  mkdir -p "${run}/study"
  if [ "${name}" = ood ]; then
    attrobust evaluate "checkpoint=${run}" attributions=false "eval.num_examples=${OOD_IMAGES}" \
      "eval.corruptions=${CORRUPTIONS}" "seed=${SEED}" "hydra.run.dir=${out}" >"${out}.log" 2>&1
  else
    # shellcheck disable=SC2046,SC2086  # several overrides each
    attrobust evaluate "checkpoint=${run}" "explainer=${name}" $(explainer_args "${name}") ${STUDY_ARGS} \
      "eval.num_examples=${IMAGES}" "seed=${SEED}" "hydra.run.dir=${out}" >"${out}.log" 2>&1
  fi || { echo "$(date +%T) FAILED ${run} ${name} (see ${out}.log)"; return 1; }
  echo "$(date +%T) evaluated ${run} ${name}"
}
export -f train train_args evaluate explainer_args
export STUDY SEED IMAGES OOD_IMAGES CORRUPTIONS STUDY_ARGS OMP_NUM_THREADS=1 MKL_NUM_THREADS=1

if [[ "${STUDY}" =~ [[:space:]] ]]; then
  echo "error: STUDY='${STUDY}' holds whitespace; choose a folder path without spaces" >&2
  exit 2
fi
mkdir -p "${STUDY}/runs"
phase() { [[ " ${PHASES} " == *" $1 "* ]]; }
models() { for algo in ${ALGOS}; do for arch in ${ARCHS}; do echo "${algo} ${arch}"; done; done; }
evaluations() {  # "<run> <explainer or ood>" of every model
  models | while read -r algo arch; do
    local names="ood ${EXPLAINERS}"
    if [ "${arch}" = vit ]; then names+=" ${VIT_EXPLAINERS}"; fi
    for name in ${names}; do echo "${STUDY}/runs/${algo}_${arch} ${name}"; done
  done
}
failed=0  # xargs exits non-zero when a job did; the next phases run all the same
if phase train; then models | xargs -r -P "${JOBS}" -L 1 bash -c 'train "$0" "$1"' || failed=1; fi
if phase evaluate; then evaluations | xargs -r -P "${JOBS}" -L 1 bash -c 'evaluate "$0" "$1"' || failed=1; fi
if phase report; then "${PYTHON}" "$(dirname "$0")/study_report.py" "${STUDY}" --out "${STUDY}/report" || failed=1; fi
exit "${failed}"
