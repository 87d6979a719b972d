"""`attrobust attack`: attacks on the explanations of a trained model, without accuracy (attrobust/parts)."""

from __future__ import annotations

import pandas as pd
from omegaconf import DictConfig

from attrobust.parts import Request
from attrobust.rundir import Job
from attrobust.tasks.evaluate import run_evaluation
from attrobust.tasks.restore import load_trained


def attack(cfg: DictConfig, job: Job) -> pd.DataFrame | None:
    """Attack the explanations (`cfg.explainer`) of a checkpoint on its correctly classified test images
    (`cfg.attack`) beside its random controls (`eval.baselines`), scored by `eval.metrics`; the stability,
    faithfulness and randomisation parts too when `eval.*` lists them.

    Writes `measures.csv` (one row per image and attack), result rows and tables, `examples.pt` and `figure.png`; a
    killed run resumes in the same folder; sharded like `evaluate`.
    """
    return run_evaluation(load_trained(cfg), job, Request(accuracy_attack=None, attack_key="attribution_attack"))
