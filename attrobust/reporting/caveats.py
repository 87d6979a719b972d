"""Warnings that keep a headline from misleading: read from the result rows of one evaluation.

- A random control (an attack that ascends nothing: random_sign, random_noise) that looks at least as strong as the
  attack on a metric (the headline, strict accounting) means the attack is weaker than noise there.
- More than a third of the scored images unmoved under an attack: its reference-accounting averages are upper bounds
  on robustness.
Each is one line naming the numbers and the remedy; the measurements themselves are unchanged.
"""

from __future__ import annotations

import pandas as pd

from attrobust.metrics import METRICS, metric_name_of
from attrobust.reporting.rows import attack_key

UNMOVED_SHARE = 1 / 3
UNMOVED_REMEDY = ("the headline columns count only the images with a counted iterate; to move more images raise the "
                  "attack's steps or restarts, or evaluate with eval.protocol=robust (random starts)")
WEAKER_REMEDY = ("the attack is weaker than random noise here at this budget: raise its steps or restarts, try "
                 "eval.protocol=robust (random starts), or check that the explainer's gradient reaches the input "
                 "(a flat or saturated explainer gives the attack no direction)")


def headline_caveats(rows: pd.DataFrame, controls: tuple[str, ...]) -> list[str]:
    """One line per problem in the rows of one run: `controls` are the names of the random attacks. Attacks are
    compared on the headline (strict) accounting, or the reference's where no image has a counted iterate."""
    lines = []
    values = rows.pivot_table(index="attack", columns="metric", values="value", aggfunc="mean", sort=False)
    name_of = {attack: attack_key(attack).split()[0] for attack in values.index}
    attacks = [a for a in values.index if name_of[a] not in controls and "images_unmoved" in values.columns
               and pd.notna(values.loc[a, "images_unmoved"])]  # attacks on explanations (not stability lines)
    for attack in attacks:
        scored, unmoved = values.loc[attack, "images_scored"], values.loc[attack, "images_unmoved"]
        name = attack_key(attack)
        if scored > 0 and unmoved > UNMOVED_SHARE * scored:
            lines.append(f"{int(unmoved)} of {int(scored)} images never moved under {name}: the reference accounting "
                         f"(the 'ref' columns) scores them as unchanged maps, which overstates robustness; "
                         f"{UNMOVED_REMEDY}")
        strict = any(_headline(m, True) and pd.notna(values.loc[attack, m]) for m in values.columns)
        for control in (c for c in values.index if name_of[c] in controls):
            weaker = [_compare(metric, values.loc[attack, metric], values.loc[control, metric])
                      for metric in values.columns if _headline(metric, strict)]
            weaker = [text for text in weaker if text]
            if weaker:
                lines.append(f"the random control {attack_key(control)} looks at least as strong as {name} on "
                             f"{', '.join(weaker)}; {WEAKER_REMEDY}")
    return lines


def _headline(metric: str, strict: bool) -> bool:
    return metric.endswith("_strict") == strict and metric_name_of(metric.removesuffix("_strict")) is not None


def _compare(metric: str, attack: float, control: float) -> str:
    """'IN (77.46 vs 78.64)' when the control is at least as strong as the attack on `metric`, else ''."""
    if pd.isna(attack) or pd.isna(control):
        return ""
    measure = METRICS.get(metric_name_of(metric.removesuffix("_strict")) or "")
    better = measure.higher_is_better  # type: ignore[attr-defined]
    stronger = control <= attack if better else control >= attack
    return f"{metric} ({control:.4g} vs {attack:.4g})" if stronger else ""


CHANCE_MARGIN = 1.5  # final training accuracy at most this many times chance: the model did not learn


def training_caveats(history: list[dict[str, float]], num_classes: int) -> list[str]:
    """A line when the last epoch's training accuracy (on clean images) is at chance level."""
    if not history or "acc" not in history[-1]:
        return []
    accuracy, chance = float(history[-1]["acc"]), 1.0 / num_classes
    if accuracy > CHANCE_MARGIN * chance:
        return []
    return [f"training accuracy after the last epoch is {100 * accuracy:.1f} %, chance level for {num_classes} "
            f"classes ({100 * chance:.1f} %): the model did not learn; lower the regulariser's weight (reg.weight), "
            f"raise reg.eps_warmup_epochs, or check optim.lr"]


def warmup_caveat(eps_warmup_epochs: int, epochs: int, eps: float) -> list[str]:
    """A line when an eps warm-up outlasts the run, so training never reaches the eps it was asked for."""
    if eps_warmup_epochs <= epochs:
        return []
    reached = eps * epochs / eps_warmup_epochs
    return [f"reg.eps_warmup_epochs={eps_warmup_epochs} is longer than the run's {epochs} epoch(s): training ends at "
            f"eps {reached:.4g}, not {eps:g}; set reg.eps_warmup_epochs<={epochs} or train longer"]
