"""Each experiment tracker's logs read back with that tool's own reader, as one shape (`Tracked`), so one test checks
them all: the CSV files with pandas, TensorBoard's event files with its EventAccumulator, MLflow's SQLite store with
the MLflow client, the W&B offline run file with W&B's own record schema (wandb_internal_pb2.Record).

W&B keeps no Python reader of its `.wandb` file since its core moved to Go: `wandb_records` undoes the file's framing
(LevelDB's log format: 32 KiB blocks of records with a 7-byte header, after W&B's 7-byte file header) and parses each
record with W&B's protobuf schema."""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd


@dataclass
class Tracked:
    """One tracked run: its name, parameters, metrics {name: {step: value}}, kept files and whether it finished."""

    name: str
    params: dict[str, str]
    metrics: dict[str, dict[int, float]] = field(default_factory=dict)
    artifacts: set[str] = field(default_factory=set)
    finished: bool = False
    group: str | None = None


def read_csv_runs(run_dirs: list[Path], workdir: Path) -> list[Tracked]:
    runs = []
    for run_dir in run_dirs:
        folder = run_dir / "tracking"
        described = json.loads((folder / "params.json").read_text())
        tracked = Tracked(described["name"], {k: str(v) for k, v in described["params"].items()},
                          group=described["group"])
        for row in pd.read_csv(folder / "metrics.csv").itertuples():
            tracked.metrics.setdefault(row.name, {})[int(row.step)] = float(row.value)
        tracked.artifacts = set((folder / "artifacts.txt").read_text().split())
        tracked.finished = (folder / "status.txt").read_text().strip() == "finished"
        runs.append(tracked)
    return runs


def read_tensorboard_runs(run_dirs: list[Path], workdir: Path) -> list[Tracked]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import plugin_data_pb2

    runs = []
    for run_dir in run_dirs:
        events = EventAccumulator(str(run_dir / "tensorboard"), size_guidance={"scalars": 0, "tensors": 0,
                                                                                "images": 0})
        events.Reload()
        info = plugin_data_pb2.HParamsPluginData.FromString(
            events.PluginTagToContent("hparams")["_hparams_/session_start_info"]).session_start_info
        params = {key: str(getattr(value, value.WhichOneof("kind"))) for key, value in info.hparams.items()}
        tracked = Tracked(run_dir.name, params)
        for tag in events.Tags()["scalars"]:
            tracked.metrics[tag] = {event.step: event.value for event in events.Scalars(tag)}
        texts = {tag for tag in events.Tags()["tensors"] if tag.endswith("/text_summary")}
        tracked.artifacts = {tag.removesuffix("/text_summary") for tag in texts} | set(events.Tags()["images"])
        status = events.Tensors("status/text_summary")[-1].tensor_proto.string_val[0].decode()
        tracked.finished = status == "finished"
        runs.append(tracked)
    return runs


def read_mlflow_runs(run_dirs: list[Path], workdir: Path) -> list[Tracked]:
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{workdir / 'outputs' / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("attrobust")
    found = {run.info.run_name: run for run in client.search_runs([experiment.experiment_id])}
    runs = []
    for run_dir in run_dirs:
        run = found[run_dir.name]
        tracked = Tracked(run.info.run_name, dict(run.data.params), group=run.data.tags.get("sweep"))
        for key in run.data.metrics:
            tracked.metrics[key] = {m.step: m.value for m in client.get_metric_history(run.info.run_id, key)}
        tracked.artifacts = {info.path for info in client.list_artifacts(run.info.run_id)}
        tracked.finished = run.info.status == "FINISHED"
        runs.append(tracked)
    return runs


def wandb_records(path: Path) -> list:
    """The protobuf records of a W&B run file (see the module doc)."""
    from wandb.proto import wandb_internal_pb2

    data, block, header = path.read_bytes(), 32768, 7
    assert data[:4] == b":W&B", f"{path} is not a W&B run file"
    records, pending, position = [], b"", header
    while position + header <= len(data):
        left = block - position % block
        _, length, kind = struct.unpack("<IHB", data[position:position + header]) if left >= header else (0, 0, 0)
        if left < header or (length == 0 and kind == 0):  # the rest of a block is padding
            position += left
            continue
        pending += data[position + header:position + header + length]
        position += header + length
        if kind in (1, 4):  # a whole record, or the last piece of one
            records.append(wandb_internal_pb2.Record.FromString(pending))
            pending = b""
    return records


def read_wandb_runs(run_dirs: list[Path], workdir: Path) -> list[Tracked]:
    by_name = {}
    for path in (workdir / "outputs" / "wandb").glob("offline-run-*/run-*.wandb"):
        tracked = Tracked("", {})
        step = 0
        for record in wandb_records(path):
            kind = record.WhichOneof("record_type")
            if kind == "run":
                tracked.name, tracked.group = record.run.display_name, record.run.run_group or None
                config = {item.key: json.loads(item.value_json) for item in record.run.config.update}
                tracked.params = {k: str(v) for k, v in _flat(config).items()}
            elif kind == "history":
                row = {"/".join(item.nested_key) or item.key: json.loads(item.value_json)
                       for item in record.history.item}
                step = int(row.get("epoch", step))
                for key, value in row.items():
                    if not key.startswith("_") and key != "epoch":
                        tracked.metrics.setdefault(key, {})[step] = float(value)
            elif kind == "artifact":
                tracked.artifacts |= {entry.path for entry in record.artifact.manifest.contents}
            elif kind == "exit":
                tracked.finished = record.exit.exit_code == 0
        by_name[tracked.name] = tracked
    return [by_name[run_dir.name] for run_dir in run_dirs]


def _flat(tree: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


READERS = {"csv": read_csv_runs, "tensorboard": read_tensorboard_runs, "mlflow": read_mlflow_runs,
           "wandb": read_wandb_runs}
