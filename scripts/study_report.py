"""The report of the explainability study (`scripts/explainability_study.sh`): one table of models x explainers x
criteria with intervals, and an answer to each of the five findings of Nourelahi et al. ("How explainable are
adversarially-robust CNNs?", 2022) for these models, with the numbers that say whether it holds.

Reads `<study>/runs/<model>/study/<explainer>/` (evaluate with an explainer: faithfulness.csv, measures.csv,
randomisation.csv) and `<study>/runs/<model>/study/ood/` (accuracy.csv, corruption.csv); an evaluation counts once
its evaluation.json is written (the last file evaluate writes). Every interval is a 95 % percentile bootstrap over
the test images (seeded, `--resamples`; tables show mean ± half the interval's width, study.csv its low and high):
every model is evaluated on the same first test images and one resample of the image indices serves every model and
explainer. Explanations are scored on the images a model classifies correctly (and IN on those with a counted
iterate), so each model's means are over its own images (n beside each); differences between two models (findings 1
and 4) are paired on the images both scored. A finding the models at hand cannot test (a family, an explainer or a
robust model missing, fewer than MIN_MODELS models, an undefined correlation) is reported as not testable. The
explanation criteria:
- insertion and deletion (the areas under the model's probability curves; higher insertion and lower deletion are
  better) and the study's explainability score, insertion - deletion;
- IN under the top-k attack and under the random-noise control (top-k intersection, %), on the images with a counted
  iterate (the robust protocol's headline);
- the sanity check: Spearman correlation of the map with the map of the model with every layer re-initialised
  (lower: the map depends on the weights, as an explanation should).

    python scripts/study_report.py outputs/study_mini --out outputs/study_mini/report

Writes study.md (the tables and the findings) and study.csv (every interval, with its low, high and n) to --out.
"""

from __future__ import annotations

import argparse
import json
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from scipy.stats import rankdata

from attrobust.atomic import write_text_atomic
from attrobust.explainers import EXPLAINERS

ADVERSARIAL = ("pgd", "trades")   # the adversarially trained algorithms (the paper's "robust" models)
ROBUST_GAIN = 10.0                # points of AA over the natural model that make an adversarially trained model robust
MIN_MODELS = 4                    # models a finding across models (2, 5) needs
CONTENDER_SHARE = 0.05            # a model best in at least this share of the resamples may be the best (finding 5)
CRITERIA = ("insertion", "deletion", "explainability", "in_attack", "in_noise", "kendall_attack", "sanity")
HEADINGS = {"insertion": "insertion", "deletion": "deletion", "explainability": "insertion - deletion",
            "in_attack": "IN attack (%)", "in_noise": "IN noise (%)", "kendall_attack": "Kendall attack",
            "sanity": "sanity (Spearman)", "confidence": "confidence"}


@dataclass
class Study:
    models: pd.DataFrame     # per model (index: name): algo, arch, run
    cells: pd.DataFrame      # per (model, explainer, image index): the criteria and the confidence
    ood: pd.DataFrame        # per (model, image index): correct, robust, corrupted (accuracy over the corruptions)
    missing: list[str]       # evaluations the study lacks


def load_models(study: Path) -> tuple[pd.DataFrame, list[str]]:
    """The trained models (index: the run folder's name) and the run folders without a finished model."""
    rows, unfinished = [], []
    for run in sorted(p for p in (study / "runs").iterdir() if p.is_dir()):
        # the training's settings (written by its evaluation at the end), else those of one of the study's evaluations
        found = [p for p in (run / "settings.json", *sorted(run.glob("study/*/settings.json"))) if p.is_file()]
        if run.is_dir() and (run / "model.pt").is_file() and found:
            setting = json.loads(found[0].read_text())["setting"]
            algo = str(setting.get("experiment") or setting["reg.name"]).removeprefix("mnist_mini_")
            rows.append({"model": run.name, "algo": algo, "arch": setting["model.name"], "run": run})
        elif not (run / "model.pt").is_file():
            unfinished.append(f"{run.name} (no model.pt: its training failed or did not finish)")
    if not rows:
        raise SystemExit(f"error: no evaluated model in {study / 'runs'}; run scripts/explainability_study.sh first")
    return pd.DataFrame(rows).set_index("model"), unfinished


def read_cell(folder: Path) -> pd.DataFrame:
    """Per image index: the criteria of one evaluation with one explainer."""
    faith = pd.read_csv(folder / "faithfulness.csv").set_index("index")
    out = faith[["confidence", "insertion", "deletion"]].assign(explainability=faith.insertion - faith.deletion)
    measures = pd.read_csv(folder / "measures.csv")
    counted = measures[measures.qualified.astype(bool)].set_index("index")
    for attack, suffix in (("topk", "attack"), ("random_noise", "noise")):
        rows = counted[counted.attack == attack]
        out[f"in_{suffix}"] = 100 * rows.topk_intersection
        out[f"kendall_{suffix}"] = rows.kendall
    sanity = pd.read_csv(folder / "randomisation.csv").set_index("index")
    out["sanity"] = sanity[[c for c in sanity.columns if c.startswith("spearman@")][-1]]  # every layer randomised
    return out


def read_ood(folder: Path) -> pd.DataFrame:
    accuracy = pd.read_csv(folder / "accuracy.csv").set_index("index")
    corrupted = pd.read_csv(folder / "corruption.csv").set_index("index").drop(columns="label")
    errors = (1 - corrupted.astype(float)).add_prefix("error:")   # per <corruption>@<severity>
    base = pd.DataFrame({"correct": accuracy.correct.astype(float), "robust": accuracy.robust.astype(float),
                         "corrupted": corrupted.astype(float).mean(axis=1)})
    return pd.concat([base, errors.reindex(base.index)], axis=1).copy()  # one block: assign() stays cheap


def load(study: Path) -> Study:
    models, missing = load_models(study)
    cells, ood = [], []
    for name, run in models.run.items():
        for folder in sorted((run / "study").glob("*/")):
            done = (folder / "evaluation.json").is_file() and (folder / "results.csv").is_file()
            if folder.name == "ood" and done:
                ood.append(read_ood(folder).assign(model=name))
            elif done and (folder / "faithfulness.csv").is_file():
                cells.append(read_cell(folder).assign(model=name, explainer=folder.name))
            else:
                missing.append(f"{name}/{folder.name}")
        if not (run / "study" / "ood" / "evaluation.json").is_file() and f"{name}/ood" not in missing:
            missing.append(f"{name}/ood")
    if not cells:
        raise SystemExit(f"error: no explainer evaluation under {study}/runs/*/study; run the evaluate phase")
    return Study(models, pd.concat(cells).reset_index(), pd.concat(ood).reset_index() if ood else pd.DataFrame(),
                 missing)


def draws(indices: np.ndarray, resamples: int, rng: np.random.Generator) -> np.ndarray:
    """(resamples + 1, n) positions into `indices`: row 0 the images themselves, then bootstrap draws."""
    n = len(indices)
    return np.concatenate([np.arange(n)[None], rng.integers(0, n, (resamples, n))])


def resampled_mean(values: pd.Series, images: np.ndarray, drawn: np.ndarray) -> np.ndarray:
    """(resamples + 1,) means of `values` (indexed by image) over each draw of `images`; missing images skipped (a
    draw of none of its images gives NaN)."""
    v = values.reindex(images).to_numpy(float)[drawn]
    kept = ~np.isnan(v)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(kept, v, 0.0).sum(axis=1) / kept.sum(axis=1)


def quiet_nanmean(arrays: list[np.ndarray]) -> np.ndarray:
    """The mean of equal-length arrays, skipping NaN; NaN where all are (a draw of none of the scored images)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(arrays, axis=0)


def summary(samples: np.ndarray, n: int) -> dict[str, float]:
    low, high = np.nanpercentile(samples[1:], [2.5, 97.5]) if np.isfinite(samples[1:]).any() else (np.nan, np.nan)
    return {"value": float(samples[0]), "low": float(low), "high": float(high), "n": n}


def shown(s: dict[str, float], digits: int = 3) -> str:
    if not np.isfinite(s["value"]):
        return "n/a"
    return f"{s['value']:.{digits}f} ± {(s['high'] - s['low']) / 2:.{digits}f}"


def resolved(s: dict[str, float]) -> int:
    """+1 / -1: the interval lies above / below zero; 0: it holds zero."""
    return 1 if s["low"] > 0 else -1 if s["high"] < 0 else 0


@dataclass
class Resampled:
    """Every mean of the study under one bootstrap of the images: row 0 the images themselves."""
    cells: dict[tuple[str, str], dict[str, np.ndarray]]   # (model, explainer) -> criterion -> samples
    per_image: dict[tuple[str, str], pd.DataFrame]        # (model, explainer) -> the criteria per image index
    counts: dict[tuple[str, str], dict[str, int]]         # (model, explainer) -> criterion -> images scored
    models: dict[str, dict[str, np.ndarray]]              # model -> na, aa, corrupted, confidence -> samples
    ood_images: int
    images: np.ndarray                                    # the explained images' indices
    drawn: np.ndarray                                     # (resamples + 1, images): positions into `images`


def resample(study: Study, resamples: int, seed: int) -> Resampled:
    rng = np.random.default_rng(seed)
    images = np.sort(study.cells["index"].unique())
    drawn = draws(images, resamples, rng)
    cells, counts, models, per_images = {}, {}, {}, {}
    for (model, explainer), frame in study.cells.groupby(["model", "explainer"]):
        per_image = frame.set_index("index")
        cells[model, explainer] = {c: resampled_mean(per_image[c], images, drawn) for c in (*CRITERIA, "confidence")}
        counts[model, explainer] = {c: int(per_image[c].notna().sum()) for c in (*CRITERIA, "confidence")}
        per_images[model, explainer] = per_image
    ood_images = np.sort(study.ood["index"].unique()) if len(study.ood) else np.array([], dtype=int)
    ood_drawn = draws(ood_images, resamples, rng)
    for model in study.models.index:
        mine = study.ood[study.ood.model == model].set_index("index") if len(study.ood) else pd.DataFrame()
        confidences = [v["confidence"] for (m, _), v in cells.items() if m == model]
        samples = {"confidence": quiet_nanmean(confidences) if confidences else np.full(resamples + 1, np.nan)}
        for key, column in (("na", "correct"), ("aa", "robust"), ("corrupted", "corrupted")):
            samples[key] = (100 * resampled_mean(mine[column], ood_images, ood_drawn) if len(mine)
                            else np.full(resamples + 1, np.nan))
        models[model] = samples | summed_errors(mine, ood_images, ood_drawn)
    return Resampled(cells, per_images, counts, models, len(ood_images), images, drawn)


def summed_errors(per_image: pd.DataFrame, images: np.ndarray, drawn: np.ndarray) -> dict[str, np.ndarray]:
    """'error:<corruption>' -> its error rate summed over its severities, for each draw (Hendrycks and Dietterich's
    numerator and denominator of the corruption error)."""
    out: dict[str, np.ndarray] = {}
    for column in (c for c in per_image.columns if c.startswith("error:")):
        name = column.rsplit("@", 1)[0]
        out[name] = out.get(name, 0) + resampled_mean(per_image[column], images, drawn)
    return out


def mean_corruption_error(r: Resampled, model: str, baseline: str) -> np.ndarray:
    """mCE (%) of `model` relative to `baseline` on the same images: the mean over corruptions of the ratio of their
    summed errors, over the corruptions on which the baseline errs on these images (`corruptions_left_out` names the
    others); NaN when the two measured different corruptions."""
    mine, theirs = (sorted(k for k in r.models[m] if k.startswith("error:")) for m in (model, baseline))
    kept = [k for k in mine if r.models[baseline][k][0] > 0]
    if not kept or mine != theirs:
        return np.full(len(r.models[model]["na"]), np.nan)
    with np.errstate(invalid="ignore", divide="ignore"):
        return 100 * np.mean([r.models[model][k] / r.models[baseline][k] for k in kept], axis=0)


def corruptions_left_out(study: Study, r: Resampled) -> list[str]:
    """The corruptions some natural model never errs on (left out of the mCE against it)."""
    naturals = study.models.index[study.models.algo == "natural"]
    return sorted({k.removeprefix("error:") for m in naturals for k, v in r.models[m].items()
                   if k.startswith("error:") and v[0] == 0})


def explained(study: Study) -> list[str]:
    """The models evaluated with at least one explainer (the explanation findings are about these)."""
    return [m for m in study.models.index if m in set(study.cells.model)]


def common_explainers(study: Study) -> list[str]:
    """The explainers evaluated on every explained model, in the registry's order."""
    have = study.cells.groupby("explainer").model.nunique()
    return [name for name in EXPLAINERS.names() if have.get(name, 0) == len(explained(study))]


def family(explainer: str) -> str:
    return EXPLAINERS.build({"name": explainer}).family


def mean_over(r: Resampled, model: str, explainers: list[str], criterion: str) -> np.ndarray:
    """The mean over `explainers` of the model's `criterion` (NaN for a model not evaluated with any)."""
    values = [r.cells[model, e][criterion] for e in explainers if (model, e) in r.cells]
    return np.mean(values, axis=0) if values else np.full(len(r.drawn), np.nan)


def model_table(study: Study, r: Resampled, explainers: list[str]) -> pd.DataFrame:
    rows = []
    for model, info in study.models.iterrows():
        m = r.models[model]
        row = {"model": model, "algorithm": info.algo, "architecture": info.arch}
        for key, heading in (("na", "NA (%)"), ("aa", "AA (%)"), ("corrupted", "corruption accuracy (%)")):
            row[heading] = summary(m[key], r.ood_images)
        natural = study.models.index[(study.models.arch == info.arch) & (study.models.algo == "natural")]
        row["mCE vs natural (%)"] = summary(mean_corruption_error(r, model, natural[0]) if len(natural)
                                            else np.full(len(m["na"]), np.nan), r.ood_images)
        row["confidence"] = summary(m["confidence"], max((c["confidence"] for (mm, _), c in r.counts.items()
                                                          if mm == model), default=0))
        row["insertion - deletion (mean)"] = summary(mean_over(r, model, explainers, "explainability"),
                                                     row["confidence"]["n"])
        row["IN attack (%) (mean)"] = summary(mean_over(r, model, explainers, "in_attack"), row["confidence"]["n"])
        rows.append(row)
    return pd.DataFrame(rows)


def cell_table(r: Resampled) -> pd.DataFrame:
    rows = []
    for (model, explainer), samples in sorted(r.cells.items()):
        row = {"model": model, "explainer": explainer, "family": family(explainer)}
        row.update({HEADINGS[c]: summary(samples[c], r.counts[model, explainer][c]) for c in CRITERIA})
        rows.append(row)
    return pd.DataFrame(rows)


def spearman_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Spearman's correlation of each row of `a` with the same row of `b` (rows: bootstrap samples), over the
    columns where both are defined (ties get their mean rank); NaN for a row with fewer than 3 such columns or no
    spread."""
    both = ~np.isnan(a) & ~np.isnan(b)
    ra = rankdata(np.where(both, a, np.nan), axis=1, nan_policy="omit")
    rb = rankdata(np.where(both, b, np.nan), axis=1, nan_policy="omit")
    with np.errstate(invalid="ignore", divide="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        ra, rb = ra - np.nanmean(ra, axis=1, keepdims=True), rb - np.nanmean(rb, axis=1, keepdims=True)
        rho = np.nansum(ra * rb, axis=1) / np.sqrt(np.nansum(ra ** 2, axis=1) * np.nansum(rb ** 2, axis=1))
    return np.where(both.sum(axis=1) >= 3, rho, np.nan)


def pairs(study: Study, r: Resampled, algos: tuple[str, ...] | None) -> tuple[list[tuple[str, str]], list[str]]:
    """(natural model, other model) of each architecture: the others of `algos` whose AA exceeds the natural model's
    by ROBUST_GAIN points (None: every algorithm that is neither natural nor adversarial); and those left out."""
    kept, left = [], []
    for _, group in study.models.groupby("arch"):
        natural = group.index[group.algo == "natural"]
        for model, algo in group.algo.items():
            if not (algo in algos if algos else algo not in (*ADVERSARIAL, "natural")):
                continue
            if len(natural) == 0:
                left.append(f"{model} (no natural model of its architecture)")
                continue
            aa, natural_aa = r.models[model]["aa"][0], r.models[natural[0]]["aa"][0]
            if algos and not (np.isfinite(aa) and np.isfinite(natural_aa)):
                left.append(f"{model} (AA not measured yet)")
            elif algos and not aa - natural_aa >= ROBUST_GAIN:
                left.append(f"{model} (not robust: AA {aa:.1f} % against {natural_aa:.1f} %)")
            else:
                kept.append((natural[0], model))
    return kept, left


def paired_difference(r: Resampled, kept: list[tuple[str, str]], explainers: list[str],
                      criterion: str) -> tuple[np.ndarray, int]:
    """Other minus natural model on the images both scored, averaged over the pairs and explainers (a draw in which a
    pair shares no image leaves that pair out of that draw's mean); and the fewest images a pair shares."""
    differences, shared = [], []
    for n, o in kept:
        for e in explainers:
            if (o, e) in r.cells and (n, e) in r.cells:
                difference = r.per_image[o, e][criterion] - r.per_image[n, e][criterion]
                differences.append(resampled_mean(difference, r.images, r.drawn))
                shared.append(int(difference.notna().sum()))
    if not differences:
        return np.full(len(r.drawn), np.nan), 0
    return quiet_nanmean(differences), min(shared)


def family_differences(r: Resampled, kept: list[tuple[str, str]], explainers: list[str]) -> pd.DataFrame:
    rows = []
    for name in sorted({family(e) for e in explainers}, key=["gradient", "cam", "perturbation", "attention"].index):
        mine = [e for e in explainers if family(e) == name]
        row = {"family": name, "explainers": ", ".join(mine)}
        for criterion in ("explainability", "insertion", "deletion", "in_attack", "sanity"):
            row[HEADINGS[criterion]] = summary(*paired_difference(r, kept, mine, criterion))
        rows.append(row)
    return pd.DataFrame(rows)


def finding_1(study: Study, r: Resampled, explainers: list[str]) -> tuple[list[str], pd.DataFrame]:
    kept, left = pairs(study, r, ADVERSARIAL)
    lines = ["### 1. Adversarially robust models score higher with gradient-based explainers, not CAM- or "
             "perturbation-based ones", ""]
    if not kept:
        return [*lines, f"**Not testable** here: no adversarially trained model is {ROBUST_GAIN:g} points of AA "
                f"above its architecture's natural model (left out: {', '.join(left) or 'none trained'}).", ""], None
    families = {family(e) for e in explainers}
    if not {"gradient", "cam", "perturbation"} <= families:
        return [*lines, "**Not testable** here: it compares the gradient, CAM and perturbation families, and the "
                f"explainers every model has cover only {', '.join(sorted(families))}.", ""], None
    table = family_differences(r, kept, explainers)
    by_family = {row.family: resolved(row["insertion - deletion"]) for _, row in table.iterrows()}
    holds = by_family["gradient"] == 1 and all(by_family[f] < 1 for f in ("cam", "perturbation"))
    lines += [f"Robust minus natural model on the images both scored, paired, averaged over the architectures "
              f"({', '.join(f'{o} - {n}' for n, o in kept)}) and each family's explainers (n: the fewest images a "
              "pair shares)" + (f"; left out: {', '.join(left)}" if left else "") + ".", "",
              markdown(table), "",
              f"**{'Holds' if holds else 'Does not hold'}** on these models: the score (insertion - deletion) "
              f"difference is {verdict_words(by_family)}.", ""]
    return lines, table


def verdict_words(by_family: dict[str, int]) -> str:
    words = {1: "resolved above zero", -1: "resolved below zero", 0: "not resolved"}
    return "; ".join(f"{name}: {words[sign]}" for name, sign in by_family.items())


def attribution_robust_lines(study: Study, r: Resampled, explainers: list[str]) -> list[str]:
    kept, _ = pairs(study, r, None)
    if not kept:
        return []
    return ["Beside it, the attribution-robust objective(s) minus the natural model, paired the same way "
            f"({', '.join(f'{o} - {n}' for n, o in kept)}):", "",
            markdown(family_differences(r, kept, explainers)), ""]


def too_few(names: list[str]) -> str | None:
    """The not-testable line of a finding across models, when there are fewer than MIN_MODELS."""
    if len(names) >= MIN_MODELS:
        return None
    return (f"**Not testable** here: a finding across models needs at least {MIN_MODELS} models evaluated with "
            f"the same explainers; there are {len(names)}.")


def finding_2(study: Study, r: Resampled, explainers: list[str]) -> list[str]:
    names = explained(study)
    lines = ["### 2. AdvProp models, more accurate, are not more explainable", "",
             "No AdvProp model is trained here (it needs auxiliary batch norms that these architectures do not "
             "have), so the finding is asked as its question: is a more accurate model more explainable? Spearman's "
             f"correlation across the {len(names)} models between each accuracy and the mean score (insertion - "
             "deletion over the explainers every model has). Descriptive: with one seed per model the interval is "
             "over the images only, and the architectures differ in both accuracy and score.", ""]
    if too_few(names):
        return [*lines, str(too_few(names)), ""]
    score = np.stack([mean_over(r, m, explainers, "explainability") for m in names], axis=1)
    rows, signs = [], []
    for key, heading in (("na", "NA"), ("corrupted", "corruption accuracy")):
        s = summary(spearman_rows(np.stack([r.models[m][key] for m in names], axis=1), score), len(names))
        rows.append({"accuracy": heading, "Spearman with the score": s})
        signs.append(resolved(s) if np.isfinite(s["value"]) and np.isfinite(s["low"]) else None)
    lines += [markdown(pd.DataFrame(rows)), ""]
    if None in signs:
        return [*lines, "**Not testable** here: a correlation is undefined (tied or unmeasured accuracies).", ""]
    holds = all(sign < 1 for sign in signs)
    return [*lines, f"**{'Holds' if holds else 'Does not hold'}** on these models: "
            + ("no accuracy correlates positively with the score beyond its interval." if holds else
               "a more accurate model is more explainable here (a correlation resolved above zero)."), ""]


def finding_3(study: Study, r: Resampled, explainers: list[str]) -> list[str]:
    names = explained(study)
    lines = ["### 3. Grad-CAM and RISE are consistently the best explainers", ""]
    if not {"gradcam", "rise"} <= set(explainers):
        return [*lines, "**Not testable** here: Grad-CAM and RISE must both be evaluated on every model (the "
                f"explainers every model has: {', '.join(explainers)}).", ""]
    ranks = np.stack([rankdata(-np.stack([r.cells[m, e]["explainability"] for e in explainers], axis=1), axis=1)
                      for m in names])                                    # (models, resamples + 1, explainers)
    mean_rank = ranks.mean(axis=0)
    order = np.argsort(mean_rank[0], kind="stable")
    rows = [{"explainer": explainers[i], "family": family(explainers[i]),
             "mean rank": summary(mean_rank[:, i], len(names)),
             "models where top 3": int((ranks[:, 0, i] <= 3).sum())} for i in order]
    third = mean_rank[0, order[min(2, len(order) - 1)]]
    holds = all(mean_rank[0, explainers.index(name)] <= third for name in ("gradcam", "rise"))
    return [*lines, f"Each model's explainers ranked by score (insertion - deletion; 1 = best of {len(explainers)}, "
            f"ties share their mean rank), the rank averaged over the {len(names)} models, with its interval over "
            "the images:", "", markdown(pd.DataFrame(rows)), "",
            f"**{'Holds' if holds else 'Does not hold'}** on these models: the three best mean ranks are "
            f"{', '.join(explainers[i] for i in order[:3])}; Grad-CAM ranks {rank_of(rows, 'gradcam')} and RISE "
            f"{rank_of(rows, 'rise')} of {len(explainers)}.", ""]


def rank_of(rows: list[dict], name: str) -> str:
    place = [i for i, row in enumerate(rows) if row["explainer"] == name]
    return f"{place[0] + 1}" if place else "n/a (not evaluated on every model)"


def within_model_correlation(study: Study, r: Resampled, criterion: str) -> tuple[np.ndarray, int]:
    """Spearman's correlation between the model's confidence and `criterion` over the images each (model, explainer)
    scored, averaged over the (model, explainer) pairs where it is defined; and how many those are."""
    out = []
    for _, frame in study.cells.groupby(["model", "explainer"]):
        per_image = frame.set_index("index").reindex(r.images)
        confidence, value = (per_image[c].to_numpy(float)[r.drawn] for c in ("confidence", criterion))
        rho = spearman_rows(confidence, value)
        if np.isfinite(rho[0]):
            out.append(rho)
    return (quiet_nanmean(out) if out else np.full(len(r.drawn), np.nan)), len(out)


def finding_4(study: Study, r: Resampled, explainers: list[str]) -> list[str]:
    names = explained(study)
    confidence = np.stack([r.models[m]["confidence"] for m in names], axis=1)
    rows, signs = [], {}
    for criterion in ("insertion", "deletion"):
        rho, cells = within_model_correlation(study, r, criterion)
        within = summary(rho, cells)
        across = summary(spearman_rows(confidence, np.stack([mean_over(r, m, explainers, criterion)
                                                             for m in names], axis=1)), len(names))
        rows.append({"measure": criterion, "with confidence, over a model's images": within,
                     "with confidence, over the models": across})
        signs[criterion] = resolved(within) if cells else None
    lines = ["### 4. Insertion and deletion are biased towards natural and robust models by the model's confidence",
             "", "Spearman's correlation with the model's probability of the true class on the clean image: over "
             "the images each (model, explainer) scored, averaged over those pairs (n: how many); and over the "
             "models' means (n: models):", "", markdown(pd.DataFrame(rows)), ""]
    kept, _ = pairs(study, r, ADVERSARIAL)
    if not kept or None in signs.values():
        return [*lines, "**Not testable** here: it needs an adversarially robust model beside its natural one and "
                "defined correlations.", ""]
    diff = {c: summary(*paired_difference(r, kept, explainers, c)) for c in ("confidence", "insertion", "deletion")}
    holds = signs == {"insertion": 1, "deletion": 1} and all(resolved(s) == -1 for s in diff.values())
    return [*lines, "Robust minus natural model (paired on the images both scored, averaged over the explainers): "
            + "; ".join(f"{c} {shown(s)}" for c, s in diff.items()) + ".", "",
            f"**{'Holds' if holds else 'Does not hold'}** on these models: "
            + ("both measures rise with confidence, and the robust models are less confident, with lower "
               "insertion (against them) and lower deletion (in their favour)." if holds else
               "it needs both correlations over the images resolved above zero, and the robust models less "
               "confident with lower insertion and deletion, all resolved; see the numbers above."), ""]


def best_shares(values: np.ndarray) -> np.ndarray:
    """(models,) the share of the resamples (rows 1..) in which each model is best, a tie shared equally."""
    top = values[1:] == np.nanmax(values[1:], axis=1, keepdims=True)
    return (top / top.sum(axis=1, keepdims=True)).mean(axis=0)


def finding_5(study: Study, r: Resampled, explainers: list[str]) -> list[str]:
    names = explained(study)
    lines = ["### 5. No model is best on all three criteria", ""]
    if too_few(names):
        return [*lines, str(too_few(names)), ""]
    criteria = {"NA": np.stack([r.models[m]["na"] for m in names], axis=1),
                "corruption accuracy": np.stack([r.models[m]["corrupted"] for m in names], axis=1),
                "score (insertion - deletion)": np.stack([mean_over(r, m, explainers, "explainability")
                                                         for m in names], axis=1)}
    if any(np.isnan(values[0]).any() for values in criteria.values()):
        return [*lines, "**Not testable** here: a model lacks one of the three criteria.", ""]
    rows, best, contenders = [], {}, []
    for (heading, values), digits in zip(criteria.items(), (1, 1, 3)):
        shares = best_shares(values)
        tops = [names[i] for i in np.flatnonzero(values[0] == values[0].max())]
        best[heading] = tops
        contenders.append({names[i] for i in np.flatnonzero(shares >= CONTENDER_SHARE)})
        rows.append({"criterion": heading, "best model (ties: all)": ", ".join(tops),
                     "value": shown(summary(values[:, names.index(tops[0])], 0), digits),
                     "resamples where it is best (%)": round(100 * float(shares[names.index(tops[0])]), 1),
                     f"models best in >= {100 * CONTENDER_SHARE:g} % of them": ", ".join(sorted(contenders[-1]))})
    on_all = set.intersection(*(set(v) for v in best.values()))
    settled = not set.intersection(*contenders)
    return [*lines, markdown(pd.DataFrame(rows)), "",
            f"**{'Does not hold' if on_all else 'Holds'}** on these models: "
            + (f"{', '.join(sorted(on_all))} is best on all three" if on_all else "no model is best on all three")
            + "; " + ("no model is a contender on all three in the resamples, so this is resolved." if settled else
                      f"some model is best on all three in at least {100 * CONTENDER_SHARE:g} % of the resamples, "
                      "so this is not resolved."), ""]


def flat(table: pd.DataFrame) -> pd.DataFrame:
    """The table with each interval as value, low, high and n columns (for the CSV)."""
    out = {}
    for column in table.columns:
        if table[column].map(lambda v: isinstance(v, dict)).all():
            for part in ("value", "low", "high", "n"):
                out[f"{column} {part}"] = table[column].map(lambda v, p=part: v[p])
        else:
            out[column] = table[column]
    return pd.DataFrame(out)


def markdown(table: pd.DataFrame) -> str:
    """The table with each interval shown as mean ± half-width."""
    digits = {"NA (%)": 1, "AA (%)": 1, "corruption accuracy (%)": 1, "mCE vs natural (%)": 1, "IN attack (%)": 1,
              "IN noise (%)": 1, "IN attack (%) (mean)": 1, "mean rank": 2}
    shown_table = table.apply(lambda col: col.map(lambda v: shown(v, digits.get(col.name, 3))
                                                  if isinstance(v, dict) else v))
    return shown_table.to_markdown(index=False)


def provenance(study: Study) -> tuple[list[str], list[str]]:
    """What the evaluations ran (the commits, each explainer's attacks as its results name them) and the explainers
    whose models were evaluated under different settings (their evaluation digests differ), which cannot be compared."""
    commits, attacks, digests = set(), {}, {}
    for _, run in study.models.run.items():
        for results in sorted((run / "study").glob("*/results.csv")):
            if not (results.parent / "evaluation.json").is_file():
                continue
            frame = pd.read_csv(results)
            name = results.parent.name
            commits.update(frame.git_commit.astype(str).unique())
            attacks.setdefault(name, set()).update(a for a in frame.attack.unique()  # the attack on explanations
                                                   if a.startswith("topk") or (name == "ood" and "@" not in a))
            digests.setdefault(name, set()).update(frame.evaluation.astype(str).unique())
    lines = [f"Evaluations at commit(s) {', '.join(sorted(commits))}; the attacks as the results name them:", ""]
    lines += [f"- {name}: {'; '.join(sorted(named))}" for name, named in sorted(attacks.items())]
    return [*lines, ""], sorted(name for name, found in digests.items() if len(found) > 1)


def report(study: Study, r: Resampled) -> tuple[str, pd.DataFrame]:
    explainers = common_explainers(study)
    models, cells = model_table(study, r, explainers), cell_table(r)
    ran, differing = provenance(study)
    left_out = corruptions_left_out(study, r)
    lines = ["# The explainability study", "",
             f"{len(study.models)} models, {study.cells.explainer.nunique()} explainers ({len(explainers)} on every "
             f"model), {len(r.images)} explained test images and {r.ood_images} for the accuracies; every interval "
             f"is a 95 % bootstrap over the images (mean ± half-width; study.csv has low, high and n). Explanations "
             "are scored on the images each model classifies correctly (n beside each mean).", "", *ran]
    if differing:
        lines += [f"**Warning**: the models were evaluated under different settings with {', '.join(differing)} "
                  "(their evaluation digests differ): those columns do not compare; rerun them alike.", ""]
    lines += ["## Models", "", markdown(models), "",
              *([f"The mCE leaves out {', '.join(left_out)}: a natural model made no error on it here.", ""]
                if left_out else []),
              "## Models x explainers x criteria", "", markdown(cells), "",
              "## The five findings of Nourelahi et al. (2022) on these models", ""]
    first, _ = finding_1(study, r, explainers)
    lines += [*first, *attribution_robust_lines(study, r, explainers)]
    for finding in (finding_2, finding_3, finding_4, finding_5):
        lines += finding(study, r, explainers)
    if study.missing:
        lines += ["## Missing", "", "Not evaluated (failed or not run; rerun the study to resume): "
                  + ", ".join(study.missing) + ".", ""]
    table = pd.concat([flat(models).assign(table="models"), flat(cells).assign(table="cells")])
    return "\n".join(lines), table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("study", type=Path, help="the study folder (STUDY of scripts/explainability_study.sh)")
    parser.add_argument("--out", type=Path, default=None, help="where to write study.md and study.csv "
                        "(default: <study>/report)")
    parser.add_argument("--resamples", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if not (args.study / "runs").is_dir():
        parser.error(f"{args.study}: no runs folder; run scripts/explainability_study.sh with STUDY={args.study}")
    if args.resamples < 1:
        parser.error(f"--resamples must be >= 1, got {args.resamples}")
    study = load(args.study)
    text, table = report(study, resample(study, args.resamples, args.seed))
    out = args.out or args.study / "report"
    out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out / "study.csv", table.to_csv(index=False))
    write_text_atomic(out / "study.md", text)
    print(f"wrote {out / 'study.md'} and {out / 'study.csv'}")


if __name__ == "__main__":
    main()
