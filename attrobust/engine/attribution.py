"""Attribution-robustness evaluation: run an attribution attack on the correctly classified test images, in chunks,
and score each kept map with the configured metrics.

Only images the model classifies correctly are attacked and scored, as in the reference evaluation. Chunks hold
`batch_size` images; every image of a chunk and all of its explainer's passes (IG path points, noise samples) go
through the network together. A chunk that runs out of CUDA memory is done in pieces of half its size, and later
chunks keep the smaller pieces. A shard (`engine.sharding`) does every n-th chunk. The per-image table has the
columns `BOOKKEEPING_COLUMNS` then one column per metric, in the order of `eval.metrics`; an image without a counted
iterate scores each metric's `identical` value (the reference's accounting).
`index` is the image's index in the whole test split.

Work is never lost: each finished chunk's rows (and kept iterates) are written atomically to a `MeasureStore`, and a
run that was killed (SIGKILL, a lost node) or stopped (SIGTERM / SIGUSR1, between chunks) resumes at its first
missing chunk when the same command runs again in the same folder. Every chunk draws its random numbers (random
starts, random baselines) from a seed of its own (`unit_seed`: the run's seed and the chunk's first position), so a
resumed run, and the shards of a sharded one, end with the rows of an uninterrupted whole run (same chunk size,
which the store records).
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import pandas as pd
import torch
from torch import Tensor, nn

from attrobust.atomic import read_csv_exact, save_torch_atomic, write_text_atomic
from attrobust.attacks.attribution import AttributionAttack, AttributionAttackResult
from attrobust.data.base import ImageSet
from attrobust.engine.progress import ProgressReporter
from attrobust.engine.sharding import WHOLE, Shard, unit_seed
from attrobust.engine.stopping import catch_stop_signals
from attrobust.errors import AttrobustError
from attrobust.metrics import MapSpec, Metric

log = logging.getLogger("attrobust")
BOOKKEEPING_COLUMNS = ["index", "label", "qualified", "moved", "support_covered"]
# Explainer passes (IG path points, noise samples) per chunk of images that `auto_batch_size` aims for. On a CPU the
# explainers split a chunk's points into passes of 100 rows (explainers.base.rows_per_pass), so a chunk of 8 IG
# images only batches the bookkeeping.
AUTO_POINTS = {"cpu": 800, "cuda": 20_000}
# At most this many images per chunk: a one-pass explainer (gradient, Grad-CAM) does not split its chunk into passes,
# and a CPU's second-order passes are fastest at about 100 rows (explainers.base.CPU_POINTS_PER_PASS)
AUTO_IMAGES = {"cpu": 100, "cuda": 1_000}


@dataclass(frozen=True)
class AttributionEvaluation:
    per_image: pd.DataFrame  # one row per scored image: BOOKKEEPING_COLUMNS, then one column per metric
    n_images: int            # test images considered (scored = correctly classified)
    resumed: int = 0         # scored images whose rows an earlier, interrupted run had written
    chunk: int = 0           # images per chunk (the unit a shard takes)
    piece: int = 0           # images per attack call at the end (smaller than chunk after running out of memory)


@dataclass
class MeasureStore:
    """The finished chunks of one attack: `<first position>.csv` (rows) and `.pt` (kept iterates, float32) in
    `folder`, each written atomically, and `manifest.json` (what was evaluated, the chunk size, and the SHA-256 of
    each finished chunk's two files). `folder=None` keeps them in memory (no resume). `fingerprint` says what must
    match for a later run to resume these chunks; a chunk is listed before its rows are written (the rows mark it
    done), and one whose files differ from the digests listed (cut short, changed, not listed) is refused."""

    folder: Path | None
    fingerprint: str = ""
    _rows: dict[int, pd.DataFrame] = field(default_factory=dict)
    _perturbed: dict[int, Tensor] = field(default_factory=dict)
    _done: dict[str, str] = field(default_factory=dict)  # first position -> SHA-256 of its .csv and .pt
    _sizes: tuple[int, int] = (0, 0)  # chunk, piece

    def check(self) -> tuple[int, int] | None:
        """The chunk and piece sizes of an earlier run of this evaluation here (None: none); chunks of another
        evaluation are refused with one line, before any work."""
        manifest = None if self.folder is None else self.folder / "manifest.json"
        if manifest is None or not manifest.is_file():
            return None
        try:
            saved = json.loads(manifest.read_text(encoding="utf-8"))
            sizes = int(saved["chunk"]), int(saved.get("piece", saved["chunk"]))
            done = saved.get("done")
            if not isinstance(saved.get("fingerprint"), str) or min(sizes) < 1 or not (
                    done is None or isinstance(done, dict) and all(isinstance(v, str) for v in done.values())):
                raise ValueError("a field of the wrong type")
        except (ValueError, TypeError, KeyError, AttributeError) as error:
            raise AttrobustError(f"unreadable {manifest} ({type(error).__name__}): remove {self.folder} to compute "
                                 f"its chunks again") from None
        if saved.get("fingerprint") != self.fingerprint:
            raise AttrobustError(f"{self.folder} holds the unfinished measures of another evaluation (other settings, "
                                 f"images, checkpoint, device, shard or accel.amp); resume it with the command that "
                                 f"started it, run in a new folder, or remove {self.folder} to start over")
        return sizes

    def begin(self, chunk: int) -> tuple[int, int, dict[int, pd.DataFrame]]:
        """The chunk size to use (an earlier run's, when resuming), the piece size (smaller after running out of
        device memory) and the finished pieces by first position."""
        if self.folder is None:
            return chunk, chunk, dict(self._rows)
        saved = self.check()
        piece = chunk
        if saved is not None:
            if saved[0] != chunk:
                log.info("resuming with the earlier run's %d images per chunk (not %d), so that the rows match",
                         saved[0], chunk)
            chunk, piece = saved
        else:
            self.folder.mkdir(parents=True, exist_ok=True)
            self.record(chunk, piece)
        self._sizes = (chunk, piece)
        return chunk, piece, self._finished()

    def _finished(self) -> dict[int, pd.DataFrame]:
        """The rows of the chunks the manifest lists, each checked against its digest (manifests written before the
        digests were kept list none: every chunk on disk counts)."""
        assert self.folder is not None
        listed = json.loads((self.folder / "manifest.json").read_text(encoding="utf-8")).get("done")
        done = {}
        for path in sorted(self.folder.glob("*.csv")):
            if not path.stem.isdigit():
                continue
            if listed is not None:
                if self._digest(int(path.stem)) != listed.get(path.stem):
                    raise AttrobustError(f"{path} (or its .pt) is not the chunk this evaluation wrote (cut short or "
                                         f"changed since); remove it to compute that chunk again")
                self._done[path.stem] = listed[path.stem]
            done[int(path.stem)] = read_csv_exact(path)
        return done

    def _digest(self, start: int, rows: bytes | None = None) -> str:
        """SHA-256 of a chunk's rows (`rows`, or its .csv) and its .pt."""
        assert self.folder is not None
        csv, pt = (self.folder / f"{start}{suffix}" for suffix in (".csv", ".pt"))
        digest = hashlib.sha256(rows if rows is not None else csv.read_bytes())
        digest.update(pt.read_bytes() if pt.is_file() else b"")
        return digest.hexdigest()

    def record(self, chunk: int, piece: int) -> None:
        self._sizes = (chunk, piece)
        if self.folder is not None:
            text = json.dumps({"fingerprint": self.fingerprint, "chunk": chunk, "piece": piece, "done": self._done})
            write_text_atomic(self.folder / "manifest.json", text)

    def save(self, start: int, rows: pd.DataFrame, perturbed: Tensor) -> None:
        """A finished chunk: its iterates first, then its rows (whose file marks the chunk as done)."""
        if self.folder is None:
            self._rows[start], self._perturbed[start] = rows, perturbed
            return
        save_torch_atomic(perturbed, self.folder / f"{start}.pt")
        text = rows.to_csv(index=False)
        self._done[str(start)] = self._digest(start, text.encode("utf-8"))
        self.record(*self._sizes)  # listed before its rows exist: a chunk with rows on disk is always listed
        write_text_atomic(self.folder / f"{start}.csv", text)

    def perturbed(self, positions: list[int]) -> Tensor:
        """The kept iterates of the scored images at `positions` (0-based, in this run's scoring order: its chunks in
        order of their first image, which for a shard skips the other shards' chunks)."""
        starts = sorted(self._perturbed) if self.folder is None else sorted(int(p.stem) for p in
                                                                            self.folder.glob("*.pt"))
        chunks: list[Tensor] = []  # loaded in order until the last position asked for

        def chunk_of(position: int) -> tuple[Tensor, int]:
            first = 0
            for at, start in enumerate(starts):
                if at == len(chunks):
                    chunks.append(self._perturbed[start] if self.folder is None else
                                  torch.load(self.folder / f"{start}.pt", map_location="cpu", weights_only=True))
                if position < first + len(chunks[at]):
                    return chunks[at], position - first
                first += len(chunks[at])
            raise IndexError(f"no kept iterate for scored image {position}")

        pieces = [chunk[offset] for chunk, offset in map(chunk_of, positions)]
        return torch.stack(pieces) if pieces else torch.empty(0)

    def discard(self) -> None:
        """Remove the chunks once the run's own files (measures.csv, tables, figure) are written."""
        if self.folder is not None:
            shutil.rmtree(self.folder, ignore_errors=True)
            if self.folder.parent.is_dir() and not any(self.folder.parent.iterdir()):
                self.folder.parent.rmdir()  # measures.parts/, once every attack's chunks are gone


def auto_batch_size(device: torch.device, passes_per_image: int) -> int:
    """Images per chunk so that a chunk's explainer passes stay near what the device handles best."""
    kind = device.type if device.type in AUTO_POINTS else "cpu"
    return max(1, min(AUTO_IMAGES[kind], AUTO_POINTS[kind] // passes_per_image))


def correctly_classified(model: nn.Module, data: ImageSet, batch_size: int) -> Tensor:
    """Positions (into `data`) of the images the model classifies correctly."""
    device = next(model.parameters()).device
    correct = []
    with torch.inference_mode():
        for start in range(0, len(data), batch_size):
            x, y = data.batch(slice(start, start + batch_size), device)
            correct.append(model(x).argmax(1) == y)
    return torch.cat(correct).nonzero().flatten().cpu()  # one wait for the device, after the loop


def evaluate_attributions(model: nn.Module, data: ImageSet, attack: AttributionAttack, metrics: list[Metric],
                          batch_size: int | None, predict_batch_size: int, store: MeasureStore | None = None,
                          seed: int = 0, log_every_s: float = 30.0, shard: Shard = WHOLE) -> AttributionEvaluation:
    """Per-image measures of `attack` on the images of `data` that `model` classifies correctly (module docstring),
    in this shard's chunks. With a `store` on disk, finished chunks are saved as they finish and an earlier run's are
    taken up."""
    store = store if store is not None else MeasureStore(None)
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    columns = BOOKKEEPING_COLUMNS + [metric.column for metric in metrics]
    steps_per_image = attack.steps * attack.restarts_to_run
    try:
        scored = correctly_classified(model, data, predict_batch_size)
        chunk, piece, done = store.begin(batch_size or auto_batch_size(device, attack.explainer.passes_per_image))
        units = list(shard.units(len(scored), chunk))
        mine = sum(end - first for first, end in units)
        resumed = sum(len(part) for part in done.values())
        if resumed:
            log.info("resuming %s: %d of %d images were measured by an earlier run", attack.name, resumed, mine)
        rows: list[pd.DataFrame] = []

        def status() -> str:
            return _running_means(rows, metrics) if rows else ""

        with catch_stop_signals() as stop, ProgressReporter(f"attack {attack.name}", mine, log_every_s,
                                                            already_done=resumed) as progress:
            finished = computed = 0  # of this shard's images, in unit order; of them, measured by this run
            for first, end in units:
                start = first
                while start < end:
                    if start in done:
                        rows.append(done[start])
                        finished += len(done[start])
                        start += len(done[start])
                        continue
                    if stop.signum is not None:
                        raise AttrobustError(f"stopped by {stop.name} after {finished} of {mine} images of "
                                             f"{attack.name} (their measures are saved); run the same command again "
                                             f"in the same folder (hydra.run.dir=...) to resume")
                    index = scored[start:min(start + piece, end)]
                    x, y = data.batch(index, device)
                    torch.manual_seed(unit_seed(seed, start))
                    step_share = len(index) / steps_per_image  # of an image, per step of the piece
                    try:
                        result = attack.run(model, x, y, on_step=partial(progress.advance, step_share, status))
                    except torch.cuda.OutOfMemoryError:
                        if len(index) == 1:
                            raise
                        result = None  # retried below, once the failed pass's tensors are released
                    if result is None:
                        piece = len(index) // 2
                        store.record(chunk, piece)
                        progress.advance_to(resumed + computed)
                        if torch.cuda.is_available():
                            torch.cuda.empty_cache()
                        log.warning("out of device memory with %d images per chunk: continuing with %d (set "
                                    "eval.attribution_batch_size=%d to start there)", len(index), piece, piece)
                        continue
                    part = _per_image(data.index[index], y, result, metrics, attack.eval_k)
                    store.save(start, part, result.perturbed.detach().float().cpu())
                    rows.append(part)
                    start += len(index)
                    finished += len(index)
                    computed += len(index)
                    progress.advance_to(resumed + computed, status)
            if stop.signum is not None:  # during the last chunk: its measures are saved, the next attack must not run
                raise AttrobustError(f"stopped by {stop.name} after all {mine} images of {attack.name} (their "
                                     f"measures are saved); run the same command again in the same folder "
                                     f"(hydra.run.dir=...) to go on")
    finally:
        model.train(was_training)
    per_image = pd.concat(rows, ignore_index=True) if rows else pd.DataFrame(columns=columns)
    return AttributionEvaluation(per_image, len(data), resumed, chunk, piece)


def score(result: AttributionAttackResult, metrics: list[Metric], k: int) -> dict[str, Tensor]:
    """Each metric between the original and the kept maps; an image without a counted iterate scores the metric's
    value of identical maps (the reference's accounting)."""
    original, perturbed = result.original_saliency, result.perturbed_saliency
    maps = MapSpec(result.image_size, min(k, original.shape[1]))
    values = {}
    for metric in metrics:
        value = metric(original, perturbed, maps)
        values[metric.column] = torch.where(result.qualified, value, torch.full_like(value, metric.identical))
    return values


def _running_means(rows: list[pd.DataFrame], metrics: list[Metric]) -> str:
    done = pd.concat(rows, ignore_index=True)
    return " ".join(f"{m.title}={m.scale * done[m.column].mean():.3g}{m.unit}" for m in metrics[:2])


def _per_image(ids: Tensor, y: Tensor, result: AttributionAttackResult, metrics: list[Metric],
               k: int) -> pd.DataFrame:
    scores = {name: value.double() for name, value in score(result, metrics, k).items()}  # float64: a CSV round
    columns = {"index": ids, "label": y, "qualified": result.qualified, "moved": result.moved,  # trip is exact
               "support_covered": result.support_covered, **scores}
    return pd.DataFrame({name: value.detach().cpu().numpy() for name, value in columns.items()})
