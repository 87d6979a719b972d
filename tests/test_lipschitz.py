"""1-Lipschitz networks (deel-torchlip), the HKR loss and certified accuracy: the exported network's layers have
spectral norm <= 1, the HKR loss equals a closed form and the package's own, a certificate never certifies an image
that L2 PGD breaks at the same radius, and GroupSort2 has a smooth counterpart through which the attacks on explanations
take their direction (or they estimate it, on request)."""

from __future__ import annotations

import copy

import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from omegaconf import OmegaConf
from torch import nn

from attrobust.attacks import PREDICTION_ATTACKS
from attrobust.config import config_dir
from attrobust.data import DATASETS
from attrobust.errors import AttrobustError
from attrobust.models import build_model, export_plain
from attrobust.regularizers import REGULARIZERS
from attrobust.regularizers.hkr import hkr_per_example

torchlip = pytest.importorskip("deel.torchlip")


def mnist_spec():
    settings = OmegaConf.to_container(OmegaConf.load(config_dir() / "dataset" / "mnist_mini.yaml"))
    settings.pop("defaults", None)
    return DATASETS.build(settings)


def trained_lipschitz(steps: int = 30):
    spec = mnist_spec()
    splits = spec.load()
    torch.manual_seed(0)
    model = build_model({"name": "lipschitz_cnn"}, spec, splits.image_shape, splits.num_classes)
    objective = REGULARIZERS.build({"name": "hkr", "alpha": 0.9, "min_margin": 1.0})
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    for step in range(steps):
        x, y = splits.train.batch(slice(50 * step, 50 * step + 50), torch.device("cpu"))
        optimizer.zero_grad()
        objective(model, x, y).loss.backward()
        optimizer.step()
    return export_plain(model.eval()), splits


def spectral_norm(layer: nn.Module, shape: tuple[int, ...], iterations: int = 300) -> float:
    """The largest singular value of a linear layer or a convolution (on inputs of `shape`) by power iteration,
    without its bias."""
    def apply(v: torch.Tensor) -> torch.Tensor:
        if isinstance(layer, nn.Linear):
            return F.linear(v, layer.weight)
        return F.conv2d(v, layer.weight, None, layer.stride, layer.padding, layer.dilation, layer.groups)

    v = torch.randn(1, *shape, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    layer = copy.deepcopy(layer).double()
    for _ in range(iterations):
        v = v.requires_grad_(True)
        (back,) = torch.autograd.grad(apply(v).pow(2).sum() / 2, v)  # A^T A v
        v = (back / back.norm()).detach()
    with torch.no_grad():
        return float(apply(v).norm())


def test_the_exported_network_is_1_lipschitz():
    model, splits = trained_lipschitz()
    net = model.net
    assert not any("torchlip.modules.conv" in type(m).__module__ for m in net.modules())  # plain layers
    assert model.traits.lipschitz_constant == 1.0
    shape: tuple[int, ...] = splits.image_shape
    product = 1.0
    for layer in net:
        if isinstance(layer, (nn.Conv2d, nn.Linear)):
            sigma = spectral_norm(layer, shape)
            assert sigma <= 1 + 1e-3, (layer, sigma)
            product *= sigma
        with torch.no_grad():
            shape = tuple(layer(torch.zeros(1, *shape)).shape[1:])
    assert product <= 1 + 1e-3
    # the network itself: no two images further apart in logits than in pixels (L2)
    x = splits.test.batch(slice(0, 64), torch.device("cpu"))[0]
    z = x + 0.05 * torch.randn_like(x)
    with torch.no_grad():
        ratio = (model(x) - model(z)).norm(dim=1) / (x - z).flatten(1).norm(dim=1)
    assert float(ratio.max()) <= 1 + 1e-3


def test_hkr_loss_equals_a_closed_form_and_the_package():
    logits = torch.tensor([[2.0, -1.0, 0.5], [0.1, 0.3, -0.2], [-1.0, 1.5, 0.0], [0.4, 0.4, 0.9]], dtype=torch.float64)
    y = torch.tensor([0, 1, 1, 2])
    alpha, margin, classes = 0.7, 0.6, 3
    share = [1 / 4, 2 / 4, 1 / 4]  # of each class in the batch
    expected = []
    for i in range(4):
        hinge = kr = 0.0
        for c in range(classes):
            own = c == int(y[i])
            term = max(0.0, margin / 2 - (1 if own else -1) * float(logits[i, c]))
            hinge += term * (classes - 1 if own else 1)
            kr += (1 / share[c] if own else -1 / (1 - share[c])) * float(logits[i, c])
        expected.append(alpha * hinge / classes - (1 - alpha) * kr / classes)
    loss, _, _ = hkr_per_example(logits, y, alpha, margin)
    torch.testing.assert_close(loss, torch.tensor(expected, dtype=torch.float64), rtol=1e-12, atol=1e-12)
    package = torchlip.HKRMulticlassLoss(alpha=alpha, min_margin=margin, reduction="none")
    torch.testing.assert_close(loss, package(logits, F.one_hot(y, classes).double()), rtol=1e-12, atol=1e-12)
    objective = REGULARIZERS.build({"name": "hkr", "alpha": alpha, "min_margin": margin})
    assert objective.couples_the_batch and objective.reduction == "mean"
    with pytest.raises(AttrobustError, match="alpha must be in"):
        REGULARIZERS.build({"name": "hkr", "alpha": 10.0})


def test_the_certificate_never_certifies_an_image_l2_pgd_breaks():
    from attrobust.engine.evaluate import label_margin

    model, splits = trained_lipschitz()
    x, y = splits.test.batch(slice(0, 200), torch.device("cpu"))
    with torch.no_grad():
        margin = label_margin(model(x).double(), y)
    attack = PREDICTION_ATTACKS.build({"name": "pgd_l2", "eps": 0.5, "steps": 20})
    torch.manual_seed(0)
    robust = attack.robust(model, x, y)
    certified = margin > 2 ** 0.5 * 0.5
    assert int(certified.sum()) > 0 and bool((robust | ~certified).all())  # certified implies robust


def test_the_smooth_counterpart_of_groupsort2_tends_to_it_and_is_swapped_in():
    from attrobust.attributions.surrogate import SoftMaxMin, check_smoothable, softplus_surrogate

    torch.manual_seed(0)
    for x in (torch.randn(4, 6, 5, 5), torch.randn(3, 8)):
        exact = torchlip.GroupSort2()(x)
        assert torch.allclose(SoftMaxMin(1.0, beta=1e3)(x), exact, atol=1e-5)  # softplus -> relu as beta grows
        smooth = SoftMaxMin(1.0, beta=1.0)(x)
        assert (smooth - exact).abs().max() > 0.1  # beta = 1 is smooth, not GroupSort2 itself
        assert torch.allclose(smooth.unflatten(1, (x.shape[1] // 2, 2)).sum(2),
                              x.unflatten(1, (x.shape[1] // 2, 2)).sum(2), atol=1e-5)  # each pair's sum kept
    assert torch.allclose(SoftMaxMin(2.0, beta=1e3)(x), 2 * exact, atol=1e-5)  # the Lipschitz coefficient
    model = export_plain(build_model({"name": "lipschitz_cnn"}, mnist_spec(), (1, 28, 28), 10))
    check_smoothable(model, "the test")  # GroupSort2 has a counterpart: not refused
    def count(kind: type) -> int:
        return sum(isinstance(module, kind) for module in model.modules())

    assert count(torchlip.GroupSort2) == 3
    with softplus_surrogate(model, beta=1.0):
        assert count(torchlip.GroupSort2) == 0 and count(SoftMaxMin) == 3
    assert count(torchlip.GroupSort2) == 3 and count(SoftMaxMin) == 0  # restored


def test_a_torchlip_network_of_ones_own_gets_the_counterpart(monkeypatch):
    from attrobust.attributions import surrogate

    without = {kind: make for kind, make in surrogate.SMOOTH_COUNTERPARTS.items() if kind is not torchlip.GroupSort2}
    monkeypatch.setattr(surrogate, "SMOOTH_COUNTERPARTS", without)  # as in a process that built no lipschitz_cnn
    net = nn.Sequential(torchlip.SpectralLinear(4, 4), torchlip.GroupSort2(), torchlip.SpectralLinear(4, 2))
    surrogate.check_smoothable(net, "the test")  # deel-torchlip is imported: GroupSort2 has its counterpart
    with surrogate.softplus_surrogate(net, beta=2.0):
        assert isinstance(net[1], surrogate.SoftMaxMin) and net[1].beta == 2.0
    assert isinstance(net[1], torchlip.GroupSort2)


def test_a_groupsort_model_is_attacked_through_its_counterpart_or_an_estimate_and_certified(cli, tmp_path):
    from conftest import TINY_RUN

    run = [arg for arg in TINY_RUN if not arg.startswith("model=")]
    assert cli("train", *run, "model=lipschitz_cnn", "reg=hkr", "hydra.run.dir=run", "eval_at_end=false").exit_code == 0
    common = ("evaluate", "checkpoint=run", "eval.num_examples=10", "attack.steps=1", "explainer=gradient",
              "attribution_attack.steps=3", "eval.baselines=[]")
    analytic = cli(*common, "hydra.run.dir=analytic")
    result = cli(*common, "attribution_attack.direction=estimated", "attribution_attack.probes=8",
                 "hydra.run.dir=estimated")
    assert analytic.exit_code == 0 and result.exit_code == 0, result.stderr
    assert "estimates its direction" not in (tmp_path / "analytic" / "evaluate.log").read_text()
    attacks = {folder: pd.read_csv(tmp_path / folder / "results.csv")["attack"] for folder in ("analytic", "estimated")}
    assert attacks["estimated"].str.contains("estimated(8 probes)", regex=False).any()
    assert not attacks["analytic"].str.contains("estimated", regex=False).any()
    for folder in ("analytic", "estimated"):
        measures = pd.read_csv(tmp_path / folder / "measures.csv")
        assert len(measures) > 0 and measures["moved"].all(), folder  # every image moved: a direction, not zero
    result = cli("evaluate", "checkpoint=run", "eval.num_examples=10", "attack=pgd_l2", "attributions=false",
                 "eval.certify_l2=0.5", "hydra.run.dir=certified")
    assert result.exit_code == 0, result.stderr
    table = pd.read_csv(tmp_path / "certified" / "table.csv")
    assert {"CA-L2 (%)", "CA-Linf (%)"} <= set(table.columns)
    assert "certified at L2 0.5 and L-inf 0.3" in table["attack"].iloc[0]
    accuracy = pd.read_csv(tmp_path / "certified" / "accuracy.csv")
    certified = accuracy["correct"] & (accuracy["margin"] > 2 ** 0.5 * 0.5)
    assert table["CA-L2 (%)"].iloc[0] == pytest.approx(100 * certified.mean())
    assert table["CA-L2 (%)"].iloc[0] <= table["AA (%)"].iloc[0]  # certified images survive PGD-L2 at 0.5


def test_missing_package_is_one_line(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_torchlip(name, *args, **kwargs):
        if name.startswith("deel"):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_torchlip)
    spec = mnist_spec()
    with pytest.raises(AttrobustError, match='pip install "attrobust\\[lipschitz\\]"'):
        build_model({"name": "lipschitz_cnn"}, spec, (1, 28, 28), 10)
