"""`model=external`: a torchvision ResNet-18 with weights saved here, the same network as a torch.export program, a
TorchScript file and from a `package.module:function`, evaluated end to end on a 32x32 `folder` dataset, give the
rows of the network loaded natively (an attrobust checkpoint); bad sources and weights are one line."""

from __future__ import annotations

import shutil
import sys
import warnings
from pathlib import Path

import pandas as pd
import pytest
import torch
from image_fixtures import make_image_folder
from typer.testing import CliRunner

from attrobust.cli import app
from attrobust.engine.checkpoint import load_checkpoint

DATA = ["dataset=folder", "dataset.path=data"]
EVALUATE = ["eval.batch_size=4", "attack.steps=2", "attribution_attack.steps=2", "explainer.steps=4",
            "eval.baselines=[random_sign]", "eval.stability=[{name:max_sensitivity,samples:2}]",
            "eval.attribution_batch_size=2", "eval.faithfulness=[{name:deletion,steps:8}]"]
COMPARED = ("accuracy.csv", "measures.csv", "stability.csv", "faithfulness.csv")


@pytest.fixture(scope="module")
def trained_once(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A ResNet-18 trained for four epochs on 12 images, once for this module (each test gets a copy), and its
    network's state dict as `weights.pt`."""
    root = tmp_path_factory.mktemp("native")
    make_image_folder(root / "data", per_class=4)
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(root)
        result = CliRunner().invoke(app, ["train", *DATA, "model=resnet18", "train.epochs=4", "train.batch_size=6",
                                          "eval_at_end=false", "hydra.run.dir=run"], catch_exceptions=False)
    assert result.exit_code == 0, result.stderr
    state = load_checkpoint(root / "run" / "model.pt")["model_state"]
    net = {key.removeprefix("net."): value for key, value in state.items() if key.startswith("net.")}
    torch.save(net, root / "weights.pt")
    return root


@pytest.fixture
def native(cli, tmp_path: Path, trained_once: Path) -> Path:
    """This test's copy of the trained run (`run`), its data and `weights.pt`, in its own folder."""
    for name in ("data", "run"):
        shutil.copytree(trained_once / name, tmp_path / name)
    shutil.copy2(trained_once / "weights.pt", tmp_path / "weights.pt")
    return tmp_path / "run"


def same_rows(a: Path, b: Path) -> None:
    for name in COMPARED:
        assert (a / name).read_bytes() == (b / name).read_bytes(), name
    values = [pd.read_csv(folder / "results.csv")[["attack", "metric", "value", "n"]] for folder in (a, b)]
    pd.testing.assert_frame_equal(*values)


def test_torchvision_name_with_weights_gives_the_native_rows(cli, tmp_path, native):
    assert cli("evaluate", "checkpoint=run", "dataset_path=data", *EVALUATE, "hydra.run.dir=native").exit_code == 0
    result = cli("evaluate", *DATA, "model=external", "model.source=torchvision:resnet18", "model.weights=weights.pt",
                 *EVALUATE, "hydra.run.dir=external")
    assert result.exit_code == 0, result.stderr
    same_rows(tmp_path / "native", tmp_path / "external")
    table = pd.read_csv(tmp_path / "external" / "table.csv")
    assert set(table["model"]) == {"torchvision:resnet18 + weights.pt"} and set(table["reg"]) == {"external"}


def test_torchscript_and_function_sources_give_the_native_rows(cli, tmp_path, native, monkeypatch):
    from attrobust.trained import restore_checkpoint

    model, splits, _ = restore_checkpoint(tmp_path / "run", dataset_path=str(tmp_path / "data"))
    example = torch.rand(2, *splits.image_shape)
    with warnings.catch_warnings():  # torch.jit is deprecated (FutureWarning) but still read
        warnings.simplefilter("ignore", FutureWarning)
        torch.jit.save(torch.jit.trace(model.net, example), str(tmp_path / "resnet.ts"))
    batch = torch.export.Dim("batch")
    torch.export.save(torch.export.export(model.net, (example,), dynamic_shapes=({0: batch},)), tmp_path / "resnet.pt2")
    first_order = [*EVALUATE, "attack@attribution_attack=random_sign"]  # compiled programs have no smooth surrogate
    assert cli("evaluate", "checkpoint=run", "dataset_path=data", *first_order, "hydra.run.dir=native").exit_code == 0
    for name in ("resnet.ts", "resnet.pt2"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            result = cli("evaluate", *DATA, "model=external", f"model.source={name}", *first_order,
                         f"hydra.run.dir=run_{name}")
        assert result.exit_code == 0, result.stderr
        same_rows(tmp_path / "native", tmp_path / f"run_{name}")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            topk = cli("evaluate", *DATA, "model=external", f"model.source={name}", *EVALUATE,
                       "attribution_attack.probes=2", f"hydra.run.dir=topk_{name}")
        assert topk.exit_code == 0, topk.stderr  # no surrogate: the direction is estimated, never zero
        log = (tmp_path / f"topk_{name}" / "evaluate.log").read_text()
        assert ": aten::relu has no smooth counterpart; the attack estimates its direction" in log, log[-2000:]

    (tmp_path / "my_nets.py").write_text("import torchvision\n\n\ndef resnet(classes):\n"
                                         "    return torchvision.models.resnet18(num_classes=classes)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    result = cli("evaluate", *DATA, "model=external", "model.source=my_nets:resnet", "model.kwargs={classes:3}",
                 "model.weights=weights.pt", *first_order, "hydra.run.dir=function")
    assert result.exit_code == 0, result.stderr
    same_rows(tmp_path / "native", tmp_path / "function")
    sys.modules.pop("my_nets", None)


def test_timm_name_with_weights_gives_the_rows_of_the_same_network_built_by_a_function(cli, tmp_path, monkeypatch):
    timm = pytest.importorskip("timm")
    make_image_folder(tmp_path / "data", per_class=2)
    torch.manual_seed(0)
    torch.save(timm.create_model("resnet18", pretrained=False, num_classes=3).state_dict(), tmp_path / "timm.pt")
    (tmp_path / "timm_nets.py").write_text("import timm\n\n\ndef resnet18():\n    return timm.create_model("
                                           "'resnet18', pretrained=False, num_classes=3)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    first_order = [*EVALUATE, "attack@attribution_attack=random_sign", "model.weights=timm.pt",
                   "model.image_size=[48,48]"]
    for name, source in (("hub", "timm:resnet18"), ("function", "timm_nets:resnet18")):
        result = cli("evaluate", *DATA, "model=external", f"model.source={source}", *first_order,
                     f"hydra.run.dir={name}")
        assert result.exit_code == 0, result.stderr
    same_rows(tmp_path / "hub", tmp_path / "function")
    sys.modules.pop("timm_nets", None)


@pytest.mark.parametrize(("overrides", "message"), [
    (["model.source=torchvision:resnet18"], "weights is missing for source=torchvision:resnet18"),
    (["model.source=torchvision:resnet99", "model.weights=weights.pt"], "torchvision has no model 'resnet99'"),
    (["model.source=torchvision:resnet18", "model.weights=nowhere.pt"], "model.weights=nowhere.pt: no such file"),
    (["model.source=torchvision:resnet18", "model.weights=weights.pt", "model.num_classes=5"],
     "model.weights=weights.pt does not fit torchvision:resnet18"),
    (["model.source=no_such_package.nets:resnet"], "cannot import resnet from no_such_package.nets"),
    (["model.source=resnet"], "source=resnet: not torchvision:<name>"),
    (["model.source=weights.pt"], "weights.pt is a torch.save file (a pickled module or a state dict)"),
    (["model.source=torchvision:resnet18", "model.weights=weights.pt", "checkpoint=run"],
     "checkpoint=run and model=external both name the model"),
])
def test_bad_external_models_are_one_line(cli, tmp_path, native, overrides, message):
    result = cli("evaluate", *DATA, "model=external", *overrides, "attributions=false", "hydra.run.dir=bad")
    assert result.exit_code == 2 and message in result.stderr, result.stderr
    assert not (tmp_path / "bad" / "results.csv").exists()


def test_a_pickled_module_is_never_unpickled(cli, tmp_path, native):
    torch.save(torch.nn.Linear(2, 2), tmp_path / "module.pt")  # a whole pickled module: code could run from it
    result = cli("evaluate", *DATA, "model=external", "model.source=torchvision:resnet18", "model.weights=module.pt",
                 "attributions=false", "hydra.run.dir=bad")
    assert result.exit_code == 2 and "is not a state dict of tensors" in result.stderr


def test_external_needs_a_dataset_and_is_never_trained(cli, tmp_path):
    result = cli("evaluate", "model=external", "model.source=torchvision:resnet18", "hydra.run.dir=bad")
    assert result.exit_code == 2 and "model=external: the data to evaluate it on" in result.stderr
    result = cli("train", "model=external", "model.source=torchvision:resnet18", "hydra.run.dir=bad")
    assert result.exit_code == 2 and "model=external is a model you bring, for evaluate" in result.stderr
    assert {path.name for path in (tmp_path / "bad").iterdir()} <= {"failed.txt"}  # a named folder keeps the error


def test_activations_called_as_functions_get_an_estimated_direction(cli, tmp_path, native, monkeypatch):
    (tmp_path / "functional_nets.py").write_text(
        "import torch.nn.functional as F\nfrom torch import nn\n\n\nclass Net(nn.Module):\n"
        "    def __init__(self):\n        super().__init__()\n        self.conv = nn.Conv2d(3, 4, 3)\n"
        "        self.fc = nn.Linear(4 * 30 * 30, 3)\n\n"
        "    def forward(self, x):\n        return self.fc(F.relu(self.conv(x)).flatten(1))\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    result = cli("evaluate", *DATA, "model=external", "model.source=functional_nets:Net", *EVALUATE,
                 "attribution_attack.probes=2", "hydra.run.dir=functional")
    assert result.exit_code == 0, result.stderr
    log = (tmp_path / "functional" / "evaluate.log").read_text()
    assert "activation network: torch.nn.functional.relu has no smooth counterpart" in log, log[-2000:]
    from functional_nets import Net

    from attrobust.attributions.surrogate import NotSmoothable, check_smoothable
    from attrobust.models.external import ExternalModel, build_external

    model = build_external(ExternalModel(source="functional_nets:Net"), (0.0,), (1.0,), (3, 32, 32), 3)
    assert isinstance(model.net, Net)
    with pytest.raises(NotSmoothable, match="calls torch.nn.functional.relu as a function"):
        check_smoothable(model, "attack topk")  # what the analytic direction would have refused
    sys.modules.pop("functional_nets", None)


def test_a_pickled_module_as_source_says_what_is_accepted(cli, tmp_path):
    torch.save(torch.nn.Linear(2, 2), tmp_path / "module.pt")
    result = cli("evaluate", "dataset=mnist_mini", "model=external", "model.source=module.pt", "attributions=false",
                 "hydra.run.dir=bad")
    assert result.exit_code == 2 and len(result.error_lines) == 1, result.stderr
    assert "module.pt is a torch.save file" in result.error_lines[0] and "torch.export" in result.error_lines[0]


def test_a_fixed_batch_program_runs_and_a_model_that_gets_nothing_right_has_na_cells(cli, tmp_path):
    """A torch.export program exported for batches of 3 runs on any batch; a network that predicts class 9 for every
    image of class 0 is evaluated with one warning and n/a (not dropped) measure columns."""
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(28 * 28, 10))
    with torch.no_grad():
        net[1].weight.normal_(0, 1e-3)
        net[1].bias.copy_(torch.arange(10.0))  # class 9 always wins
    torch.export.save(torch.export.export(net.eval(), (torch.rand(3, 1, 28, 28),)), tmp_path / "fixed.pt2")
    result = cli("evaluate", "dataset=mnist_mini", "model=external", "model.source=fixed.pt2", "eval.classes=[0]",
                 "eval.num_examples=5", "attack.steps=1", "attribution_attack.steps=2", "explainer.steps=4",
                 "hydra.run.dir=wrong")
    assert result.exit_code == 0, result.stderr
    log = (tmp_path / "wrong" / "evaluate.log").read_text()
    assert log.count("none of the 5 images is classified correctly") == 3 and log.count("WARNING") == 1, log
    assert "nan%" not in log
    table = pd.read_csv(tmp_path / "wrong" / "table.csv")
    assert {"IN (%)", "IN ref (%)", "CO", "scored"} <= set(table.columns) and table["IN (%)"].isna().all()
    assert "n/a" in (tmp_path / "wrong" / "table.md").read_text()


@pytest.mark.parametrize("explainer", ["ig", "smoothgrad"])
def test_a_third_party_pretrained_model_is_evaluated_end_to_end(cli, tmp_path, explainer):
    import numpy as np

    mnist = np.load(Path(__import__("attrobust.data", fromlist=["x"]).__path__[0]) / "mnist_mini.npz")
    """digit-recognizer-py's pretrained MNIST CNN (PyPI), its normalisation given as model.mean/std: the same
    predictions as the package's own network on the normalised images, and the attack on its explanations."""
    recognizer = pytest.importorskip("digit_recognizer", reason="digit-recognizer-py (the test extra) not installed")
    from digit_recognizer.model import CNN

    weights = Path(recognizer.__file__).parent / "models" / "handwriting_model.pth"
    result = cli("evaluate", "model=external", "model.source=digit_recognizer.model:CNN", f"model.weights={weights}",
                 "model.mean=[0.1307]", "model.std=[0.3081]", "dataset=mnist_mini", "eval.num_examples=12",
                 f"explainer={explainer}", f"explainer.{'steps' if explainer == 'ig' else 'samples'}=4",
                 "eval.protocol=robust", "attribution_attack.steps=2", "attribution_attack.restarts=1",
                 "eval.baselines=[]", "hydra.run.dir=ev")
    assert result.exit_code == 0, result.stderr
    net = CNN()
    net.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
    x, y = (torch.tensor(a[:12]) for a in (mnist["x_test"], mnist["y_test"]))
    with torch.no_grad():
        expected = net((x[:, None].float() / 255 - 0.1307) / 0.3081).argmax(1).eq(y).float().mean().item()
    rows = pd.read_csv(tmp_path / "ev" / "results.csv").set_index("metric")
    assert rows.loc["natural_accuracy", "value"] == pytest.approx(100 * expected) and expected > 0.9
    assert 0 <= rows.loc["topk_intersection", "value"] <= 100 and rows.loc["kendall", "value"] <= 1
