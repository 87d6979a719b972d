"""attack=autoattack: never more robust than PGD on the same images, and a missing package is one line."""

from __future__ import annotations

import builtins

import pytest
import torch

from attrobust.attacks import PREDICTION_ATTACKS
from attrobust.errors import AttrobustError
from conftest import TinyNet

pytest.importorskip("pyautoattack")


def test_autoattack_is_never_more_robust_than_pgd_on_the_same_images():
    torch.manual_seed(0)
    model = TinyNet().eval()
    x = torch.rand(12, 1, 8, 8)
    with torch.no_grad():
        y = model(x).argmax(1)  # every image starts correctly classified
    pgd = PREDICTION_ATTACKS.build({"name": "pgd", "eps": 0.05, "steps": 20, "step_size": 0.005})
    auto = PREDICTION_ATTACKS.build({"name": "autoattack", "eps": 0.05})
    robust_pgd, robust_auto = pgd.robust(model, x, y), auto.robust(model, x, y)
    assert robust_auto.sum() <= robust_pgd.sum() and 0 < robust_pgd.sum() < 12
    assert auto.describe() == "autoattack standard eps=0.05"


def test_a_missing_package_is_one_line(monkeypatch):
    real_import = builtins.__import__

    def without_pyautoattack(name, *args, **kwargs):
        if name.startswith("pyautoattack"):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", without_pyautoattack)
    with pytest.raises(AttrobustError, match='pip install "attrobust\\[autoattack\\]"'):
        PREDICTION_ATTACKS.build({"name": "autoattack", "eps": 0.3})
