"""The vision transformer (model=vit) and its attention explainers: rollout and gradient-weighted attention against
their recursions written one image at a time, Grad-CAM on the token grid against the grad-cam package, and a ViT
trained, evaluated and attacked through the CLI."""

from __future__ import annotations

import pandas as pd
import pytest
import torch

from attrobust.errors import AttrobustError
from attrobust.explainers import EXPLAINERS
from tests.test_explainers import images, small_cnn, tiny_vit


def one_image_attention(model, x, y):
    """Each block's attention probabilities (heads, T, T) and the target logit's gradient there, for one image."""
    modules = model.net.attention_modules()
    for module in modules:
        module.keep_attention = True
    try:
        score = model(x.unsqueeze(0))[0, y]
        attentions = [module.kept for module in modules]
        grads = [grad[0] for grad in torch.autograd.grad(score, attentions)]
    finally:
        for module in modules:
            module.keep_attention, module.kept = False, None
    return [a[0].detach() for a in attentions], grads


def upsample(row: torch.Tensor, size: int) -> torch.Tensor:
    grid = int(len(row) ** 0.5)
    return torch.nn.functional.interpolate(row.view(1, 1, grid, grid), size=(size, size), mode="bilinear")[0]


def test_attention_rollout_and_gradient_equal_their_recursions_one_image_at_a_time():
    model, x = tiny_vit(), images(3, 12)
    y = torch.tensor([1, 0, 4])
    rollout = EXPLAINERS.build({"name": "attention_rollout"}).explain(model, x, y)
    weighted = EXPLAINERS.build({"name": "attention_gradient"}).explain(model, x, y)
    for i in range(3):
        attentions, grads = one_image_attention(model, x[i], int(y[i]))
        tokens = attentions[0].shape[-1]
        joint = torch.eye(tokens, dtype=x.dtype)
        relevance = torch.eye(tokens, dtype=x.dtype)
        for attention, grad in zip(attentions, grads):
            step = 0.5 * attention.mean(0) + 0.5 * torch.eye(tokens, dtype=x.dtype)  # Abnar and Zuidema
            joint = (step / step.sum(-1, keepdim=True)) @ joint
            relevance = relevance + (grad * attention).clamp(min=0).mean(0) @ relevance  # Chefer et al. 2021
        torch.testing.assert_close(rollout[i], upsample(joint[0, 1:], 12), atol=1e-12, rtol=0)
        torch.testing.assert_close(weighted[i], upsample(relevance[0, 1:], 12), atol=1e-12, rtol=0)


def test_attention_explainers_refuse_a_cnn_in_one_line():
    for name in ("attention_rollout", "attention_gradient"):
        with pytest.raises(AttrobustError, match=f"explainer {name} reads the attention of attrobust's vision "
                                                 r"transformer \(model=vit\); NormalizedModel has none"):
            EXPLAINERS.build({"name": name}).check_model(small_cnn())


def test_gradcam_on_the_vit_reads_the_token_grid_as_the_grad_cam_package_does():
    cam_package = pytest.importorskip("pytorch_grad_cam", reason="grad-cam (the CAM oracle) is not installed")
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    model, x = tiny_vit(), images(3, 12)
    y = torch.tensor([2, 3, 0])
    ours = EXPLAINERS.build({"name": "gradcam", "interpolation": "nearest"}).explain(model, x, y)
    oracle = cam_package.GradCAM(model=model, target_layers=[model.net.grid])
    oracle.compute_cam_per_layer = lambda inputs, targets, eigen: [  # the raw maps, before scaling and resizing
        oracle.get_cam_image(inputs, None, targets, oracle.activations_and_grads.activations[0].numpy(),
                             oracle.activations_and_grads.gradients[0].numpy()).clip(min=0)[:, None]]
    oracle.aggregate_multi_layers = lambda maps: maps[0][:, 0]
    expected = torch.from_numpy(oracle(input_tensor=x, targets=[ClassifierOutputTarget(int(c)) for c in y]))
    torch.testing.assert_close(ours[:, 0, ::4, ::4], expected, atol=1e-12, rtol=0)  # nearest: each patch's value


def test_a_vit_trains_and_its_attention_explanation_is_attacked(cli, tmp_path):
    from conftest import TINY_RUN

    run = [arg for arg in TINY_RUN if not arg.startswith("model=")]
    assert cli("train", *run, "model=vit", "model.dim=16", "model.depth=2", "hydra.run.dir=run",
               "eval_at_end=false").exit_code == 0
    result = cli("evaluate", "checkpoint=run", "eval.num_examples=6", "attack.steps=1",
                 "explainer=attention_gradient", "attribution_attack.steps=2", "eval.baselines=[]",
                 "hydra.run.dir=attacked")
    assert result.exit_code == 0, result.stderr
    measures = pd.read_csv(tmp_path / "attacked" / "measures.csv")
    assert len(measures) > 0 and measures["moved"].any()
    table = (tmp_path / "attacked" / "table.md").read_text()
    assert "topk of attention_gradient" in table
