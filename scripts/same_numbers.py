"""Does a refactor change any number? Run one fixed set of commands into a folder, then compare two such folders.

    python scripts/same_numbers.py run BEFORE      # at the commit before the change
    python scripts/same_numbers.py run AFTER       # at the commit after it
    python scripts/same_numbers.py compare BEFORE AFTER

The commands: a short `mnist_mini` training (PGD, its evaluation at the end), then `evaluate` of that model under the
robust protocol with two explainers (IG and the gradient), stability and faithfulness on, on a few images, an
`attack` with SmoothGrad, and `explain`. `compare` checks every per-image file, result table, settings file, saved
map and example byte for byte, after replacing the git commit that wrote them (a refactor changes it by definition)
with COMMIT. Logs, provenance, figures (PDFs carry their creation time) and wall-clock seconds are not compared. The
run takes about 20 s on 2 CPU cores.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

TRAIN = ["+experiment=mnist_mini_pgd", "train.epochs=1", "train.num_examples=300", "eval.num_examples=20",
         "reg.steps=3", "attack.steps=5", "device=cpu"]
EVALUATE = ["eval.protocol=robust", "eval.num_examples=6", "attribution_attack.steps=4", "attack.steps=5",
            "eval.stability=[max_sensitivity,{name:local_lipschitz,samples:3}]", "eval.faithfulness=[insertion]",
            "eval.metrics=[topk_intersection,kendall]", "device=cpu"]
EXPLAINERS = {"ig": ["explainer=ig", "explainer.steps=8"], "gradient": ["explainer=gradient"]}
ATTACK = ["explainer=smoothgrad", "explainer.samples=4", "eval.num_examples=4", "attack.steps=3",
          "eval.baselines=[random_noise]", "device=cpu"]
EXPLAIN = ["explainer=ig", "explainer.steps=8", "eval.indices=[0,1,2]", "device=cpu"]
COMPARED = (".csv", ".json", ".md", ".tex", ".pt")
SKIPPED = ("provenance.json",)


def attrobust(out: Path, *args: str) -> None:
    """`attrobust ARGS` run in `out`, so that run ids (folders relative to the working directory) match."""
    subprocess.run([sys.executable, "-m", "attrobust", *args], check=True, cwd=out)


def run(out: Path) -> None:
    from attrobust.provenance import git_commit

    out.mkdir(parents=True, exist_ok=True)
    (out / "COMMIT").write_text(git_commit(), encoding="utf-8")  # what `compare` reads as the commit
    attrobust(out, "train", *TRAIN, "hydra.run.dir=train")
    for name, overrides in EXPLAINERS.items():
        attrobust(out, "evaluate", "checkpoint=train", *EVALUATE, *overrides, f"hydra.run.dir=evaluate_{name}")
    attrobust(out, "attack", "checkpoint=train", *ATTACK, "hydra.run.dir=attack")
    attrobust(out, "explain", "checkpoint=train", *EXPLAIN, "hydra.run.dir=explain")


def canonical(path: Path) -> bytes:
    """The bytes compared: a saved object's tensors and values without wall-clock seconds (`torch.save` archives
    differ by their record order alone), a CSV without its `seconds` column, any other file as it is."""
    if path.suffix == ".pt":
        import torch

        def strip(value: object) -> object:
            if isinstance(value, dict):
                return {k: strip(v) for k, v in sorted(value.items(), key=lambda kv: str(kv[0])) if k != "seconds"}
            if isinstance(value, (list, tuple)):
                return [strip(v) for v in value]
            if isinstance(value, torch.Tensor):
                return (str(value.dtype), tuple(value.shape), value.detach().cpu().contiguous().numpy().tobytes())
            return value

        return repr(strip(torch.load(path, map_location="cpu", weights_only=True))).encode()
    if path.suffix == ".csv" and b"seconds" in path.read_bytes().split(b"\n", 1)[0]:
        import pandas as pd

        return pd.read_csv(path).drop(columns="seconds").to_csv(index=False).encode()
    return path.read_bytes()


def fingerprints(folder: Path) -> dict[str, str]:
    """SHA-256 of each compared file under `folder`, with the commit that wrote them replaced by COMMIT."""
    commit = (folder / "COMMIT").read_bytes()
    found = {}
    for path in sorted(folder.rglob("*")):
        if path.is_file() and path.suffix in COMPARED and path.name not in SKIPPED and ".hydra" not in path.parts:
            data = canonical(path)
            if path.suffix != ".pt":
                data = data.replace(commit, b"COMMIT")
            found[str(path.relative_to(folder))] = hashlib.sha256(data).hexdigest()
    return found


def compare(before: Path, after: Path) -> int:
    old, new = fingerprints(before), fingerprints(after)
    differ = sorted(name for name in old.keys() & new.keys() if old[name] != new[name])
    for name in sorted(old.keys() - new.keys()):
        print(f"only in {before}: {name}")
    for name in sorted(new.keys() - old.keys()):
        print(f"only in {after}: {name}")
    for name in differ:
        print(f"differs: {name}")
    same = len(old.keys() & new.keys()) - len(differ)
    print(f"{same} file(s) identical, {len(differ)} differ, {len(old.keys() ^ new.keys())} in one folder only")
    return 1 if differ or old.keys() != new.keys() else 0


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "run":
        run(Path(sys.argv[2]).resolve())
    elif len(sys.argv) == 4 and sys.argv[1] == "compare":
        sys.exit(compare(Path(sys.argv[2]), Path(sys.argv[3])))
    else:
        sys.exit(__doc__)
