"""Accuracy: natural accuracy and accuracy under the prediction attack (`attack=`), one row per selected image
(engine/evaluate.py); for a model with a Lipschitz constant also each image's logit margin, from which the rows give
certified accuracy (`certified_rows`). Asked for by `evaluate` (and `train` at its end), not by `attack`."""

from __future__ import annotations

import logging
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

import pandas as pd

from attrobust.engine import cost
from attrobust.engine.evaluate import AccuracyCounts, PredictionAttack, accuracy_counts, accuracy_per_image
from attrobust.engine.sharding import Shard
from attrobust.models.normalize import traits_of
from attrobust.parts import PARTS
from attrobust.parts.base import EvaluationPart, Measured, Request
from attrobust.reporting.intervals import NO_INTERVALS, Bootstrap
from attrobust.reporting.rows import ROW_COLUMNS, RunIdentity, accuracy_rows

if TYPE_CHECKING:
    from attrobust.reporting.evaluation import EvaluationRecord
    from attrobust.tasks.restore import TrainedModel

log = logging.getLogger("attrobust")


@PARTS.register("accuracy")
class Accuracy(EvaluationPart):
    file: ClassVar[str] = "accuracy.csv"
    position: ClassVar[int] = 10
    every_image: ClassVar[bool] = True
    eval_keys: ClassVar[tuple[str, ...]] = ("certify_l2",)

    def __init__(self, attack: PredictionAttack) -> None:
        self.attack = attack

    @classmethod
    def configured(cls, trained: TrainedModel, request: Request) -> Accuracy | None:
        return None if request.accuracy_attack is None else cls(request.accuracy_attack)

    def groups(self) -> dict[str, str]:
        return {"attack": "attack"}

    def costs(self, trained: TrainedModel, times: cost.PassTimes, images: float) -> list[cost.Part]:
        attack = self.attack
        steps = getattr(attack, "passes_per_image", None) or \
            getattr(attack, "steps", 1) * getattr(attack, "restarts", 1)
        return [cost.Part("accuracy", images * (steps + 1 / 3) * times.first_order, "evaluate")]

    def run(self, trained: TrainedModel, work_dir: Path, shard: Shard) -> Measured:
        certificate = certificate_of(trained)
        model = trained.model
        with trained.accel.autocast(trained.device):
            frame = accuracy_per_image(trained.accel.first_order(model), trained.test, self.attack,
                                       trained.eval_settings.batch_size, trained.seed, shard,
                                       margins=certificate is not None)
        log_accuracy(accuracy_counts(frame), self.attack)
        certified = "" if certificate is None else (f"; certified at L2 {certificate['l2']:g} and L-inf "
                                                    f"{certificate['linf']:g} (Lipschitz {certificate['lipschitz']:g})")
        return Measured(frame, [("accuracy", self.attack.describe() + certified)], {"certificate": certificate})

    @classmethod
    def rows(cls, record: EvaluationRecord, lines: list[tuple[str, RunIdentity]], frame: pd.DataFrame) -> pd.DataFrame:
        identity = lines[0][1]
        bootstrap = Bootstrap.of(record.eval, identity.seed)
        n = len(frame)
        natural = 100.0 * int(frame["correct"].astype(bool).sum()) / n if n else float("nan")
        robust = 100.0 * int(frame["robust"].astype(bool).sum()) / n if "robust" in frame and n else None
        intervals = {metric: bootstrap.proportion(frame[column].astype(bool))
                     for metric, column in (("natural_accuracy", "correct"), ("adversarial_accuracy", "robust"))
                     if column in frame}
        rows = [accuracy_rows(identity, n, natural, robust, intervals)]
        if record.certificate is not None and "margin" in frame:
            rows.append(certified_rows(identity, frame, record.certificate, bootstrap))
        return pd.concat(rows, ignore_index=True)


def certificate_of(trained: TrainedModel) -> dict[str, float] | None:
    """What certified accuracy needs for a Lipschitz model (its traits' `lipschitz_constant`: L2); None for other
    models."""
    constant, threat = traits_of(trained.model).lipschitz_constant, trained.config.threat
    if constant is None:
        return None
    assert threat is not None  # a restored model always has one (its checkpoint's, or its dataset's)
    return {"lipschitz": float(constant), "l2": float(trained.eval_settings.certify_l2),
            "linf": float(threat.eps), "dimension": float(trained.test.images[0].numel())}


def certified_rows(identity: RunIdentity, accuracy: pd.DataFrame, certificate: dict[str, float],
                   bootstrap: Bootstrap = NO_INTERVALS) -> pd.DataFrame:
    """Certified accuracy of a Lipschitz model (constant L in L2): an image is certified at L2 radius r when it is
    classified correctly and its logit margin exceeds sqrt(2) L r (each logit difference is sqrt(2) L-Lipschitz). At
    the L-inf eps the certificate uses the L2 ball holding the L-inf ball, radius eps * sqrt(dimension)."""
    margin, correct = accuracy["margin"].to_numpy(), accuracy["correct"].astype(bool).to_numpy()
    n = len(accuracy)
    values = []
    for metric, radius in (("certified_accuracy_l2", certificate["l2"]),
                           ("certified_accuracy_linf", certificate["linf"] * certificate["dimension"] ** 0.5)):
        certified = correct & (margin > 2 ** 0.5 * certificate["lipschitz"] * radius)
        low, high = bootstrap.proportion(certified)
        values.append({**asdict(identity), "metric": metric, "value": 100.0 * int(certified.sum()) / n if n else
                       float("nan"), "unit": "%", "n": n, "low": low, "high": high})
    return pd.DataFrame(values, columns=ROW_COLUMNS)


def log_accuracy(counts: AccuracyCounts, attack: PredictionAttack) -> None:
    if counts.n == 0:
        log.info("no batch of eval.batch_size images for accuracy falls to this shard")
        return
    log.info("natural accuracy %.2f%%, accuracy under %s %.2f%% (n=%d)", counts.natural_accuracy_pct,
             attack.describe(), counts.adversarial_accuracy_pct, counts.n)
