"""Decoded, preprocessed splits cached once per data root, invalidated when the source or the recipe changes.

An entry is `<root>/.attrobust_cache/<dataset>-<key>.pt` (uint8 tensors). `key` hashes the recipe: the loader's
version (bumped whenever decoding or preprocessing code changes), its settings (size, equalisation, augmentation,
seed, ...) and a fingerprint of the source files (relative path, size and modification time of each). A changed,
added or removed source file, a new setting or a new loader version gives a new key, so a stale entry is never
read. Entries are written atomically; a data root that cannot be written only costs the caching (one warning).

A data folder may come from someone else, cache included, so the key alone is not trusted: an entry also records the
SHA-256 of its source files' contents and of its own tensors, both checked on every read; an entry whose tensors were
replaced (or whose sources changed without a new size or time) is rebuilt, with a warning. This detects a swapped or
damaged entry, not a forger who recomputes the digests: with data you do not trust, set `dataset.cache=false`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import pickle
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import torch

from attrobust.atomic import save_torch_atomic
from attrobust.data.base import ImageSet

log = logging.getLogger(__name__)

CACHE_FOLDER = ".attrobust_cache"
TENSOR_KEYS = ("train_images", "train_labels", "test_images", "test_labels")
SplitPair = tuple[ImageSet, ImageSet]


def source_fingerprint(root: Path, files: Iterable[Path]) -> str:
    """sha256 over (path relative to `root`, size, mtime in ns) of every file, in sorted order."""
    digest = hashlib.sha256()
    for path in sorted(files):
        stat = path.stat()
        digest.update(f"{path.relative_to(root)}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def content_digest(root: Path, files: Iterable[Path]) -> str:
    """sha256 over (path relative to `root`, contents) of every file, in sorted order."""
    digest = hashlib.sha256()
    for path in sorted(files):
        digest.update(f"{path.relative_to(root)}\0".encode())
        with path.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def tensor_digest(payload: Mapping[str, Any]) -> str:
    """sha256 over the entry's tensors (dtype, shape and bytes), in a fixed order."""
    digest = hashlib.sha256()
    for key in TENSOR_KEYS:
        tensor = payload[key]
        if not isinstance(tensor, torch.Tensor):
            raise ValueError(f"{key} is not a tensor")
        digest.update(f"{key}\0{tensor.dtype}\0{tuple(tensor.shape)}\0".encode())
        digest.update(tensor.contiguous().view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
    return digest.hexdigest()


def cache_path(root: Path, name: str, recipe: Mapping[str, Any]) -> Path:
    key = hashlib.sha256(json.dumps(recipe, sort_keys=True, default=str).encode()).hexdigest()[:16]
    return root / CACHE_FOLDER / f"{name}-{key}.pt"


def cached_splits(root: Path, name: str, recipe: Mapping[str, Any], build: Callable[[], SplitPair],
                  enabled: bool = True, sources: Iterable[Path] = ()) -> SplitPair:
    """The (train, test) pair for `recipe`: read from the cache when an entry matches (its recipe, the contents of
    `sources`, its own tensors), else built and stored."""
    if not enabled:
        return build()
    path = cache_path(root, name, recipe)
    sources_digest = content_digest(root, sources)
    stored = _read(path, recipe, sources_digest)
    if stored is not None:
        log.info("%s: using the cached tensors in %s", name, path)
        return stored
    train, test = build()
    payload = {"recipe": json.loads(json.dumps(recipe, sort_keys=True, default=str)),
               "train_images": train.images, "train_labels": train.labels,
               "test_images": test.images, "test_labels": test.labels, "sources_digest": sources_digest}
    payload["tensor_digest"] = tensor_digest(payload)
    try:
        save_torch_atomic(payload, path)
        log.info("%s: cached the decoded tensors in %s", name, path)
    except OSError as error:
        log.warning("%s: could not write the cache %s (%s); decoding again next time", name, path, error)
    return train, test


def _read(path: Path, recipe: Mapping[str, Any], sources_digest: str) -> SplitPair | None:
    if not path.is_file():
        return None
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
        if payload["recipe"] != json.loads(json.dumps(recipe, sort_keys=True, default=str)):
            return None
        if payload.get("sources_digest") != sources_digest or payload.get("tensor_digest") != tensor_digest(payload):
            log.warning("the cache entry %s does not match its source files or its own tensors (replaced or damaged); "
                        "decoding the images again", path)
            return None
        return (ImageSet(payload["train_images"], payload["train_labels"]),
                ImageSet(payload["test_images"], payload["test_labels"]))
    except (OSError, RuntimeError, KeyError, ValueError, TypeError, EOFError,
            pickle.UnpicklingError) as error:  # rebuild
        log.warning("ignoring the unreadable cache entry %s (%s)", path, error)
        return None
