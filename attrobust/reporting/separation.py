"""Does a measure tell the attack from a random control on these images? (Kamath et al.'s critique: a measure on
which noise of the attack's budget does as much damage as the attack is not measuring the attack.)

For each attribution measure and each random control run beside the attack on the same images (`eval.baselines`),
from the per-image values (the reference accounting: an image without a counted iterate scores identical maps'
value), with the damage an attack does being the measure's drop (its rise, for a measure where lower is better):
- `win_pct`: the share of images on which the attack does more damage than the control (paired; ties count as
  neither), and `ties`;
- `auroc`: the probability that the attack's damage on a random image exceeds the control's on another (ties half),
  the Mann-Whitney U over the two sets of images divided by n_attack * n_control (unpaired: how far apart the two
  distributions are; 0.5: no separation);
- `p_value`: the one-sided sign test of the paired wins against the losses (`scipy.stats.binomtest`); the measure
  separates the attack from the control when it is below `ALPHA`. A measure that does not is flagged in `table.md`
  and the log: on this evaluation its numbers cannot be read as the attack's effect.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy import stats

from attrobust.measures import Measure

ALPHA = 0.05
SEPARATION_FILE = "separation.csv"
COLUMNS = ["attack", "control", "measure", "images", "attack_wins", "control_wins", "ties", "win_pct", "auroc",
           "p_value", "separates"]


def separation(frame: pd.DataFrame, attack: str, controls: Sequence[str], metrics: Sequence[Measure]) -> pd.DataFrame:
    """One row per (control, measure) for the per-image frame of an attacks part (`attack` column: the line)."""
    by_attack = frame.set_index("index").groupby("attack", sort=False)
    if attack not in by_attack.groups:
        return pd.DataFrame(columns=COLUMNS)
    mine = by_attack.get_group(attack)
    rows = []
    for control in (c for c in controls if c in by_attack.groups):
        theirs = by_attack.get_group(control).reindex(mine.index)  # the same images, in the attack's order
        for metric in metrics:
            sign = -1.0 if metric.higher_is_better else 1.0  # damage: the measure's drop (or rise)
            ours, other = sign * mine[metric.column].to_numpy(float), sign * theirs[metric.column].to_numpy(float)
            both = ~(np.isnan(ours) | np.isnan(other))
            rows.append({"attack": attack, "control": control, "measure": metric.column,
                         **compared(ours[both], other[both])})
    return pd.DataFrame(rows, columns=COLUMNS)


def compared(attack: np.ndarray, control: np.ndarray) -> dict[str, float | int | bool]:
    """Paired wins, ties, AUROC and the sign test of the damage `attack` vs `control` on the same images."""
    wins, losses = int((attack > control).sum()), int((attack < control).sum())
    images = len(attack)
    if images == 0:
        return {"images": 0, "attack_wins": 0, "control_wins": 0, "ties": 0, "win_pct": np.nan, "auroc": np.nan,
                "p_value": np.nan, "separates": False}
    auroc = stats.mannwhitneyu(attack, control, alternative="greater").statistic / (images * images)
    p_value = stats.binomtest(wins, wins + losses, 0.5, alternative="greater").pvalue if wins + losses else 1.0
    return {"images": images, "attack_wins": wins, "control_wins": losses, "ties": images - wins - losses,
            "win_pct": 100.0 * wins / images, "auroc": float(auroc), "p_value": float(p_value),
            "separates": bool(p_value < ALPHA)}


def flagged_lines(table: pd.DataFrame, headings: dict[str, str]) -> list[str]:
    """One line per (attack, control) naming the measures that do not separate them (`headings`: column -> heading)."""
    lines = []
    for (attack, control), group in table[~table["separates"].astype(bool)].groupby(["attack", "control"],
                                                                                     sort=False):
        named = ", ".join(f"{headings.get(row.measure, row.measure)} (attack ahead on {row.win_pct:.0f} % of "
                          f"{row.images} images, AUROC {row.auroc:.2f}, p {row.p_value:.2g})" if row.images else
                          f"{headings.get(row.measure, row.measure)} (no image scored by both)"
                          for row in group.itertuples())
        lines.append(f"cannot tell {attack} from the random control {control} on these images (sign test, p >= "
                     f"{ALPHA}): {named}; these measures' numbers are not the attack's effect here")
    return lines
