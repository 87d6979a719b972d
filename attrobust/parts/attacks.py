"""Attacks on explanations: the attack configured at `attribution_attack` on the explanations of `explainer`, beside
its random controls (`eval.baselines`: the same threat model, budget, selection and explainer), each scored by the
protocol's metrics on the correctly classified images (engine/attribution.py), one row per image and attack, and
`examples.pt` / `figure.png` of the first attack. Finished chunks are kept on disk until the evaluation's files are
written, so a killed run resumes them."""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

import pandas as pd

from attrobust.atomic import save_torch_atomic
from attrobust.attacks import ATTRIBUTION_ATTACKS, attribution_attack, random_baselines
from attrobust.attacks.attribution import AttributionAttack
from attrobust.attacks.projected_ascent import pixel_amount
from attrobust.attributions.surrogate import NotSmoothable
from attrobust.explainers.base import NotDifferentiable
from attrobust.engine import cost
from attrobust.engine.attribution import AttributionEvaluation, MeasureStore, evaluate_attributions
from attrobust.engine.examples import figure_examples, figure_rows, write_examples_npz
from attrobust.engine.protocol import protocol_named
from attrobust.engine.sharding import WHOLE, Shard
from attrobust.errors import AttrobustError, choices
from attrobust.explainers import EXPLAINERS
from attrobust.explainers.base import Explainer
from attrobust.metrics import Metric
from attrobust.parts import PARTS
from attrobust.parts.base import Checks, EvaluationPart, Measured, Request
from attrobust.provenance import config_hash
from attrobust.reporting.figures import attribution_figure
from attrobust.reporting.intervals import Bootstrap
from attrobust.reporting.separation import SEPARATION_FILE, flagged_lines, separation
from attrobust.reporting.rows import RunIdentity, attribution_rows

if TYPE_CHECKING:
    from attrobust.reporting.evaluation import EvaluationRecord
    from attrobust.tasks.restore import TrainedModel

log = logging.getLogger("attrobust")


@PARTS.register("attacks")
class Attacks(EvaluationPart):
    file: ClassVar[str] = "measures.csv"
    position: ClassVar[int] = 20
    line_column: ClassVar[str | None] = "attack"
    eval_keys: ClassVar[tuple[str, ...]] = ("protocol", "metrics", "baselines")

    def __init__(self, key: str) -> None:
        self.key = key
        self.attacks: tuple[AttributionAttack, ...] = ()  # the attack first, then its controls (`prepare`)
        self.metrics: list[Metric] = []
        self.stores: list[MeasureStore] = []

    @classmethod
    def configured(cls, trained: TrainedModel, request: Request) -> Attacks | None:
        return None if request.attack_key is None else cls(request.attack_key)

    def groups(self) -> dict[str, str]:
        return {"attribution_attack": self.key, "explainer": "explainer"}

    @property
    def explainer(self) -> Explainer | None:
        return self.attacks[0].explainer if self.attacks else None

    def prepare(self, trained: TrainedModel, work_dir: Path, shard: Shard) -> None:
        """The attack and its controls, checked against the images, the model and any unfinished chunks in
        `work_dir`."""
        settings, key = trained.eval_settings, self.key
        protocol = protocol_named(settings.protocol)
        main = attribution_attack(trained.config.block(key), EXPLAINERS.build(trained.config.explainer_cfg), key)
        changes = protocol.changes(main)
        if changes:
            main = protocol.attack(main)
            log.info("eval.protocol=%s: %s runs with %s", protocol.name, key,
                     ", ".join(f"{name}={value:g}" if isinstance(value, float) else f"{name}={value}"
                               for name, value in changes.items()))
        height, width = trained.test.images.shape[-2:]
        if main.k is None or main.eval_k is None:
            main = main.sized_for(height, width)
            log.info("%s: k=%d and eval_k=%d of the %d pixels of a saliency map (null: an eighth, at most 100)", key,
                     main.k, main.eval_k, height * width)
        twice = sorted({name for name in settings.baselines if settings.baselines.count(name) > 1})
        if twice:
            raise AttrobustError(f"eval.baselines: {', '.join(twice)} listed twice; list each baseline once")
        main.check_fits(height, width, key)
        try:
            main.check_model(trained.model)
        except (NotDifferentiable, NotSmoothable) as error:  # no second derivative to ascend: estimate the direction
            main = dataclasses.replace(main, direction="estimated")
            main.check_model(trained.model)
            reason = (f"explainer {error.explainer} is not differentiable (its map comes from forward passes alone)"
                      if isinstance(error, NotDifferentiable) else
                      f"the model's activation {error.activation} has no smooth counterpart")
            log.info("%s: %s; the attack estimates its direction from %d probe pairs per step instead "
                     "(%s.direction=estimated)", key, reason, main.probes, key)
        controls = [baseline(main, name) for name in settings.baselines if name != main.name]  # not itself
        self.metrics = protocol.metrics(settings.metrics)
        for metric in self.metrics:
            try:
                metric.check_fits(height, width)
            except ValueError as error:
                raise AttrobustError(f"eval.metrics '{metric.column}': {error}") from error
        for each in (main, *controls):
            if each is not main:
                each.check_model(trained.model)
            measure_store(work_dir, trained, each, self.metrics, shard).check()  # another evaluation's: refused now
        self.attacks = (main, *controls)

    def costs(self, trained: TrainedModel, times: cost.PassTimes, images: float) -> list[cost.Part]:
        parts = []
        for each in self.attacks:
            runs, full = each.restarts_to_run, each.explainer.passes_per_image
            # a step's direction and selecting map with fewer explainer passes (direction_points, selection_points)
            # cost that much less; the kept map is drawn in full
            step = times.attack_step * each.direction_explainer.passes_per_image / full
            if each.direction == "estimated":  # 2 x probes maps of the direction's explainer per step
                step = 2 * each.probes * times.explainer * each.direction_explainer.passes_per_image / full
            select = times.explainer * each.selection_explainer.passes_per_image / full
            per_image = runs * (each.steps * step + 2 * times.explainer) if each.ascends else \
                runs * (each.steps * select + times.explainer)
            parts.append(cost.Part(each.name, images * per_image, f"attack {each.name}"))
        return parts

    def run(self, trained: TrainedModel, work_dir: Path, shard: Shard) -> Measured:
        """Every attack's per-image rows on this shard's chunks (one row per image and attack, named in `attack`);
        `examples.pt` and `figure.png` of the first attack."""
        per_image, chunks = [], {}
        self.stores = []
        for each in self.attacks:
            store = measure_store(work_dir, trained, each, self.metrics, shard)
            evaluation = attack_attributions(trained, each, self.metrics, store, shard, warn=each is self.attacks[0])
            if each is self.attacks[0]:
                draw(trained, each, evaluation, store, self.metrics, work_dir)
            per_image.append(evaluation.per_image.assign(attack=each.name))
            self.stores.append(store)
            chunks[each.name] = [evaluation.chunk, evaluation.piece]
        lines = [(each.name, each.describe()) for each in self.attacks]
        return Measured(pd.concat(per_image, ignore_index=True), lines, {"chunks": chunks})

    def finish(self) -> None:
        for store in self.stores:
            store.discard()

    @classmethod
    def rows(cls, record: EvaluationRecord, lines: list[tuple[str, RunIdentity]], frame: pd.DataFrame) -> pd.DataFrame:
        metrics = protocol_named(record.eval.get("protocol", "reference")).metrics(record.eval["metrics"])
        rows = [attribution_rows(identity, frame[frame["attack"] == name].drop(columns="attack").reset_index(drop=True),
                                 metrics, Bootstrap.of(record.eval, identity.seed)) for name, identity in lines]
        return pd.concat(rows, ignore_index=True)


    @classmethod
    def checks(cls, record: EvaluationRecord, frame: pd.DataFrame) -> Checks | None:
        """Does each measure tell the attack from each random control on these images (reporting/separation.py)?"""
        names = [name for name, _ in record.parts.get(cls.registry_name, [])]
        controls = [name for name in names if name in random_baselines()]
        attack = next((name for name in names if name not in controls), None)
        if attack is None or not controls:
            return None
        metrics = protocol_named(record.eval.get("protocol", "reference")).metrics(record.eval["metrics"])
        table = separation(frame, attack, controls, metrics)
        return Checks(SEPARATION_FILE, table, flagged_lines(table, {m.column: m.title for m in metrics}))


def baseline(main: AttributionAttack, name: str) -> AttributionAttack:
    """The random baseline `name` with the threat model, budget, selection and explainer of the attack `main`."""
    if name not in random_baselines():
        raise AttrobustError(f"eval.baselines: '{name}' is not a random baseline; choose from: "
                             f"{choices(random_baselines())} (or eval.baselines=[] for none)")
    shared = {f.name: getattr(main, f.name) for f in dataclasses.fields(AttributionAttack)}
    return ATTRIBUTION_ATTACKS.get(name)(**shared)


def measure_store(run_dir: Path, trained: TrainedModel, attack: AttributionAttack,
                  metrics: list[Metric], shard: Shard = WHOLE) -> MeasureStore:
    """Where the finished chunks of `attack` are kept until the run's files are written; resumed only by the same
    evaluation (checkpoint, images, attack, explainer, metrics, seed)."""
    what = {"checkpoint": [trained.payload.get(key) for key in ("run_id", "config_hash", "epoch")],
            "dataset": trained.dataset_name, "images": trained.test.index.tolist(), "seed": trained.seed,
            "attack": repr(attack), "metrics": [repr(metric) for metric in metrics],
            "device": trained.device.type, "amp": trained.accel.amp,
            **({} if shard.whole else {"shard": [shard.index, shard.count]})}
    return MeasureStore(run_dir / "measures.parts" / attack.name, config_hash(what))


def attack_attributions(trained: TrainedModel, attribution: AttributionAttack, metrics: list[Metric],
                        store: MeasureStore, shard: Shard = WHOLE, warn: bool = True) -> AttributionEvaluation:
    with trained.accel.autocast(trained.device):  # metrics stay float32
        evaluation = evaluate_attributions(trained.model, trained.test, attribution, metrics,
                                           trained.eval_settings.attribution_batch_size,
                                           trained.eval_settings.batch_size, store, trained.seed, shard=shard)
    log_attack_summary(attribution.describe(), evaluation.per_image, evaluation.n_images, metrics, shard, warn)
    return evaluation


def draw(trained: TrainedModel, attribution: AttributionAttack, evaluation: AttributionEvaluation,
         store: MeasureStore, metrics: list[Metric], run_dir: Path) -> None:
    """`examples.pt`, `examples.npz` and `figure.png` of the images `figure_images` chooses."""
    rows = figure_rows(evaluation.per_image, metrics[0], trained.settings.figure_choice,
                       trained.settings.figure_examples)
    examples = figure_examples(trained.model, attribution, trained.test, evaluation.per_image, rows, store, metrics,
                               trained.settings.figure_choice)
    if examples:
        save_torch_atomic(examples, run_dir / "examples.pt")
        write_examples_npz(examples, evaluation.per_image, run_dir / "examples.npz")
        what = (f"{attribution.name} attack on {attribution.explainer.describe()}, eps "
                f"{pixel_amount(attribution.eps)}, {attribution.steps} steps")
        attribution_figure(examples, run_dir / "figure.png", trained.figure_title(what))
    else:  # nothing to draw: no figure of an earlier run in this folder may stand beside these results
        for name in ("examples.pt", "examples.npz", "figure.png", "figure.pdf"):
            (run_dir / name).unlink(missing_ok=True)


def log_attack_summary(attack: str, scored: pd.DataFrame, images: int, metrics: list[Metric],
                       shard: Shard = WHOLE, warn: bool = True) -> None:
    """One line: the strict accounting first (images with a counted iterate: it cannot overstate robustness), then
    the reference's (every scored image), and the counts; never a NaN. No image to score is a warning once (`warn`:
    the first attack of the suite), an info line for its controls."""
    if len(scored) == 0 and not shard.whole:  # `images` counts the whole selection, not this shard's share
        log.info("%s: no correctly classified image of this evaluation falls to %s", attack, shard.describe())
        return
    if images == 0:
        log.info("%s: no image selected", attack)
        return
    if len(scored) == 0:
        (log.warning if warn else log.info)(
            "%s: none of the %d images is classified correctly, so no explanation was attacked (its measures are n/a "
            "in the table)", attack, images)
        return
    qualified = scored[scored["qualified"].astype(bool)]

    def means(frame: pd.DataFrame) -> str:
        return ", ".join(f"{m.title} {m.scale * frame[m.column].mean():.4g}{m.unit}" for m in metrics)

    strict = f"{means(qualified)} over the {len(qualified)} with a counted iterate" if len(qualified) else \
        "no image with a counted iterate (strict measures n/a)"
    log.info("%s on %d of %d images (correctly classified): %s; reference accounting (all %d scored): %s; %d unmoved",
             attack, len(scored), images, strict, len(scored), means(scored),
             int((~scored["moved"].astype(bool)).sum()))
