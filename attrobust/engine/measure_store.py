"""Where an attack's finished chunks are kept so that a killed or stopped run resumes (attrobust/engine/attribution.py
runs the chunks): rows and kept iterates per chunk, written atomically, and a manifest of what they measured."""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import torch
from torch import Tensor

from attrobust.atomic import read_csv_exact, save_torch_atomic, write_text_atomic
from attrobust.errors import AttrobustError

log = logging.getLogger("attrobust")


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
