"""The GPU switches on the CPU: torch.compile (and its eager fallback), bf16 autocast and channels-last give the
plain path's results within tolerance, through the same code the GPU runs."""

from __future__ import annotations

import logging

import pandas as pd
import pytest
import torch
from conftest import TINY_RUN, TinyNet

from attrobust.attacks import ATTRIBUTION_ATTACKS
from attrobust.explainers import EXPLAINERS
from attrobust.attributions import integrated_gradients, logit_of, saliency_map
from attrobust.data.base import ImageSet
from attrobust.engine.accel import Accel, CompiledOrEager
from attrobust.metrics import kendall_tau_b


def test_compiled_model_matches_eager():
    torch.manual_seed(0)
    net = TinyNet().eval()
    x = torch.rand(8, 1, 8, 8)
    wrapped = Accel(compile=True).first_order(net)
    torch.testing.assert_close(wrapped(x), net(x), rtol=1e-5, atol=1e-6)
    assert isinstance(wrapped, CompiledOrEager) and wrapped.compiled is not None  # compiled, not fallen back


def test_compile_failure_falls_back_to_eager(monkeypatch, caplog):
    def broken(*args, **kwargs):
        raise RuntimeError("no compiler here")

    monkeypatch.setattr(torch, "compile", lambda model: broken)
    net = TinyNet().eval()
    x = torch.rand(4, 1, 8, 8)
    wrapped = CompiledOrEager(net)
    with caplog.at_level(logging.WARNING, logger="attrobust"):
        torch.testing.assert_close(wrapped(x), net(x))
    assert wrapped.compiled is None and "torch.compile failed (RuntimeError: no compiler here)" in caplog.text


def test_bf16_autocast_keeps_saliency_and_attack_measures_close():
    torch.manual_seed(0)
    net = TinyNet().eval()
    x = torch.rand(6, 1, 8, 8)
    y = net(x).argmax(1)
    plain = saliency_map(integrated_gradients(logit_of(net, y), x, steps=20))
    with Accel(amp=True).autocast(x.device):
        mixed = saliency_map(integrated_gradients(logit_of(net, y), x, steps=20))
    assert mixed.dtype == torch.float32  # maps (and so every metric) stay float32
    assert kendall_tau_b(plain, mixed).min() > 0.9
    attack = ATTRIBUTION_ATTACKS.build({"name": "topk", "eps": 0.2, "steps": 3, "step_size": 0.05, "k": 20,
                                        "eval_k": 10, "restarts": 1},
                                       explainer=EXPLAINERS.build({"name": "ig", "steps": 10}))
    reference = attack.run(net, x, y)
    with Accel(amp=True).autocast(x.device):
        amp = attack.run(net, x, y)
    assert amp.kendall.dtype == reference.kendall.dtype == torch.float64  # metrics unaffected by autocast
    assert (amp.kendall - reference.kendall).abs().mean() < 0.1


def test_training_and_evaluation_with_amp_and_channels_last_through_the_cli(cli, tmp_path):
    switches = ["accel.amp=true", "accel.channels_last=true", "accel.pin_memory=false"]
    assert cli("train", *TINY_RUN, "hydra.run.dir=plain").exit_code == 0
    result = cli("train", *TINY_RUN, *switches, "hydra.run.dir=fast")
    assert result.exit_code == 0, result.stderr
    plain, fast = (pd.read_csv(tmp_path / run / "results.csv").set_index("metric")["value"]
                   for run in ("plain", "fast"))
    assert abs(plain["natural_accuracy"] - fast["natural_accuracy"]) <= 10  # 50 images after 2 steps of bf16 training
    result = cli("evaluate", "checkpoint=plain", *switches, "eval.num_examples=4", "attack.steps=1",
                 "attribution_attack.steps=2", "explainer.steps=4", "attribution_attack.restarts=1",
                 "hydra.run.dir=eval")
    assert result.exit_code == 0, result.stderr


def test_pinned_batches_are_a_cuda_only_copy_path():
    data = ImageSet(torch.randint(0, 256, (5, 1, 4, 4), dtype=torch.uint8), torch.arange(5))
    pinned = Accel(pin_memory=True).data(data)
    assert pinned.pin_memory and not Accel(pin_memory=False).data(data).pin_memory
    assert pinned.head(3).pin_memory  # kept by every view of the split
    index = torch.tensor([4, 0, 2])
    for ours, plain in zip(pinned.batch(index, torch.device("cpu")), data.batch(index, torch.device("cpu")),
                           strict=True):
        torch.testing.assert_close(ours, plain, rtol=0, atol=0)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_pinned_batches_equal_pageable_ones_on_cuda():
    data = ImageSet(torch.randint(0, 256, (64, 3, 8, 8), dtype=torch.uint8), torch.arange(64))
    index, cuda = torch.randperm(64)[:32], torch.device("cuda")
    for ours, plain in zip(Accel(pin_memory=True).data(data).batch(index, cuda), data.batch(index, cuda),
                           strict=True):
        torch.testing.assert_close(ours, plain, rtol=0, atol=0)
