"""Every explainer added after the first five against its oracle: the largest difference on the same model, inputs
and draws (float64), and the time of each on the same images in one run.

Oracles: Captum (Occlusion, GradientShap, DeepLift, KernelShap, Lime with a ridge fit), captum-rise (RISE, on our
masks), the grad-cam package (Grad-CAM++, LayerCAM, Score-CAM; maps min-max scaled as the package does, its cv2 resize
replaced by the exact bilinear rule) and zennit (LRP). The draws are made equal as in the tests
(tests/test_*_explainers.py). DeepLIFT also reports each tool's summation-to-delta error (Captum's hooks break it
on networks with both ReLUs and max-pools, see attrobust/explainers/deeplift.py).

    python scripts/explainer_oracles.py --checkpoint outputs/train/<run> --images 16 --out outputs/explainer_oracles

Writes `oracles.csv` and `oracles.md` to --out.
"""

from __future__ import annotations

import argparse
import platform
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from attrobust.atomic import write_text_atomic
from attrobust.errors import AttrobustError
from attrobust.explainers import EXPLAINERS
from attrobust.trained import restore_checkpoint

Pair = tuple[torch.Tensor, torch.Tensor]  # (ours, the oracle's), comparable


def timed(work: Callable[[], torch.Tensor]) -> tuple[torch.Tensor, float]:
    started = time.perf_counter()
    result = work()
    return result.detach(), time.perf_counter() - started


def min_max(maps: torch.Tensor) -> torch.Tensor:
    flat = maps.flatten(1) - maps.flatten(1).amin(1, keepdim=True)
    return (flat / (1e-7 + flat.amax(1, keepdim=True))).view(len(maps), -1)


def occlusion(model, x, y):
    from captum.attr import Occlusion

    ours = timed(lambda: EXPLAINERS.build({"name": "occlusion"}).explain(model, x, y))
    theirs = timed(lambda: Occlusion(model).attribute(x, sliding_window_shapes=(1, 4, 4), strides=(1, 2, 2),
                                                      baselines=0.0, target=y, perturbations_per_eval=100))
    return ours, theirs, "Captum Occlusion"


def rise(model, x, y):
    import rise as rise_module

    explainer = EXPLAINERS.build({"name": "rise", "score": "logit"})
    masks = explainer.draw_masks(*x.shape[-2:], like=x)
    original = rise_module.generate_mask_sets
    rise_module.generate_mask_sets = lambda n, config: ((m[0],) for m in masks)
    try:
        ours = timed(lambda: explainer.explain(model, x, y)[:, 0] * explainer.p)  # captum-rise leaves out 1/p
        theirs = timed(lambda: rise_module.RISE(model).attribute(x, n_masks=explainer.masks,
                                                                 initial_mask_shapes=((7, 7),), target=y))
    finally:
        rise_module.generate_mask_sets = original
    return ours, theirs, "captum-rise RISE, same masks, logits"


def gradient_shap(model, x, y):
    from captum.attr import GradientShap

    from attrobust.explainers.gradient_shap import expected_gradients

    samples, references = 20, torch.rand((20, *x.shape[1:]), generator=torch.Generator().manual_seed(5),
                                         dtype=x.dtype)
    np.random.seed(11)
    theirs = timed(lambda: GradientShap(model).attribute(x, baselines=references, n_samples=samples, target=y))
    np.random.seed(11)
    chosen = np.random.choice(len(references), samples * len(x)).tolist()
    alphas = torch.tensor(np.random.uniform(0.0, 1.0, samples * len(x)), dtype=x.dtype)

    def sample_major(rows: torch.Tensor) -> torch.Tensor:
        return rows.view(len(x), samples, *rows.shape[1:]).transpose(0, 1)

    noise = torch.zeros((samples, *x.shape), dtype=x.dtype)
    ours = timed(lambda: expected_gradients(model, x, y, sample_major(alphas), sample_major(references[chosen]),
                                            noise, rows=100))
    return ours, theirs, "Captum GradientShap, same draws"


def deeplift(model, x, y):
    from captum.attr import DeepLift

    ours = timed(lambda: EXPLAINERS.build({"name": "deeplift"}).explain(model, x, y))
    theirs = timed(lambda: DeepLift(model).attribute(x, baselines=0.0, target=y))
    with torch.no_grad():
        gap = (model(x) - model(torch.zeros_like(x))).gather(1, y[:, None])[:, 0]
    sums = [float((pair[0].flatten(1).sum(1) - gap).abs().max()) for pair in (ours, theirs)]
    return ours, theirs, f"Captum DeepLift; summation-to-delta error: ours {sums[0]:.1e}, Captum {sums[1]:.1e}"


def kernel_shap(model, x, y):
    from captum.attr import KernelShap

    from attrobust.explainers.linear_fit import grid_features

    explainer = EXPLAINERS.build({"name": "kernel_shap"})
    features = grid_features(*x.shape[-2:], explainer.cell, x.device)
    kept = explainer.coalitions(int(features.max()) + 1)
    def same_coalitions(self, inputs, **kwargs):  # a generator function, as Captum checks
        yield from (row[None] for row in kept)

    original = KernelShap.kernel_shap_perturb_generator
    KernelShap.kernel_shap_perturb_generator = same_coalitions
    try:
        theirs = timed(lambda: KernelShap(model).attribute(x, baselines=0.0, target=y,
                                                           feature_mask=features[None, None],
                                                           n_samples=explainer.samples, perturbations_per_eval=100))
    finally:
        KernelShap.kernel_shap_perturb_generator = original
    return timed(lambda: explainer.explain(model, x, y)), theirs, "Captum KernelShap, same coalitions (float32 fit)"


def lime(model, x, y):
    from captum._utils.models.linear_model import SkLearnRidge
    from captum.attr import Lime

    from attrobust.explainers.linear_fit import grid_features

    explainer = EXPLAINERS.build({"name": "lime"})
    features = grid_features(*x.shape[-2:], explainer.cell, x.device)
    kept = explainer.coalitions(int(features.max()) + 1)
    def same_coalitions(inputs, **kwargs):  # a generator function, as Captum checks
        yield from (row[None] for row in kept)

    oracle = Lime(model, interpretable_model=SkLearnRidge(alpha=explainer.alpha), perturb_func=same_coalitions)
    theirs = timed(lambda: oracle.attribute(x, baselines=0.0, target=y, feature_mask=features[None, None],
                                            n_samples=explainer.samples, perturbations_per_eval=100))
    return timed(lambda: explainer.explain(model, x, y)), theirs, "Captum Lime + SkLearnRidge, same coalitions"


def cam(name: str, oracle_name: str):
    def compare(model, x, y):
        import pytorch_grad_cam
        from pytorch_grad_cam.utils import image
        from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

        layer = model.get_submodule(model.traits.cam_layer)
        original = image.cv2.resize
        image.cv2.resize = lambda img, size: F.interpolate(
            torch.from_numpy(np.asarray(img, dtype=np.float64))[None, None], size=size[::-1], mode="bilinear",
            align_corners=False)[0, 0].numpy()
        try:
            oracle = getattr(pytorch_grad_cam, oracle_name)(model=model, target_layers=[layer])
            oracle.batch_size = 100
            theirs = timed(lambda: torch.from_numpy(oracle(input_tensor=x, targets=[ClassifierOutputTarget(int(c))
                                                                                   for c in y])).double())
        finally:
            image.cv2.resize = original
        ours = timed(lambda: EXPLAINERS.build({"name": name}).explain(model, x, y))
        return ((min_max(min_max(ours[0])), ours[1]), (theirs[0].flatten(1), theirs[1]),
                f"grad-cam {oracle_name}, maps min-max scaled")
    return compare


def lrp(rule: str):
    def compare(model, x, y):
        from zennit.attribution import Gradient
        from zennit.composites import EpsilonPlus, LayerMapComposite
        from zennit.rules import Epsilon, Pass
        from zennit.types import Activation, Convolution

        composite = EpsilonPlus() if rule == "epsilon_plus" else \
            LayerMapComposite([(Activation, Pass()), (Convolution, Epsilon()), (torch.nn.Linear, Epsilon())])

        def zennit_relevance() -> torch.Tensor:
            with Gradient(model, composite) as attributor:
                _, relevance = attributor(x, lambda out: out * torch.eye(out.shape[1], dtype=out.dtype)[y])
            return relevance * model.normalize.std  # zennit's passes the normalisation's gradient (/ std)

        theirs = timed(zennit_relevance)
        return timed(lambda: EXPLAINERS.build({"name": "lrp", "rule": rule}).explain(model, x, y)), theirs, \
            f"zennit Gradient + {type(composite).__name__}"
    return compare


COMPARISONS = {"occlusion": occlusion, "rise": rise, "gradient_shap": gradient_shap, "deeplift": deeplift,
               "lrp (epsilon_plus)": lrp("epsilon_plus"), "lrp (epsilon)": lrp("epsilon"),
               "kernel_shap": kernel_shap, "lime": lime, "gradcam_pp": cam("gradcam_pp", "GradCAMPlusPlus"),
               "layercam": cam("layercam", "LayerCAM"), "scorecam": cam("scorecam", "ScoreCAM")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", required=True, help="a training run dir or its model.pt")
    parser.add_argument("--images", type=int, default=16)
    parser.add_argument("--out", type=Path, default=Path("outputs/explainer_oracles"))
    args = parser.parse_args()
    if args.images < 1:
        parser.error(f"--images {args.images}: give 1 or more test images")
    try:
        model, splits, payload = restore_checkpoint(args.checkpoint)
    except AttrobustError as error:
        parser.error(f"--checkpoint {args.checkpoint}: {error}")
    model = model.double().eval()
    x, _ = splits.test.batch(slice(0, args.images), torch.device("cpu"))
    x = x.double()
    with torch.no_grad():
        y = model(x).argmax(1)
    rows = []
    for name, compare in COMPARISONS.items():
        compare(model, x[:2], y[:2])  # warm-up: allocations, imports
        (ours, ours_s), (theirs, theirs_s), oracle = compare(model, x, y)
        ours, theirs = ours.reshape(len(x), -1), theirs.reshape(len(x), -1).to(ours.dtype)
        rows.append({"explainer": name, "oracle": oracle, "largest difference": float((ours - theirs).abs().max()),
                     "largest |value|": float(theirs.abs().max()), "ours (s)": ours_s, "oracle (s)": theirs_s,
                     "oracle / ours": theirs_s / ours_s})
        print(rows[-1], flush=True)
    table = pd.DataFrame(rows)
    args.out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(args.out / "oracles.csv", table.to_csv(index=False, float_format="%.6g"))
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                            cwd=Path(__file__).parent).stdout.strip()
    about = (f"{payload['model_cfg']['name']} from {args.checkpoint}, {args.images} test images, float64; commit "
             f"{commit}, {platform.processor() or platform.machine()}, torch {torch.__version__}, "
             f"{torch.get_num_threads()} threads")
    write_text_atomic(args.out / "oracles.md", f"{about}\n\n{table.to_markdown(index=False, floatfmt='.3g')}\n")
    print((args.out / "oracles.md").read_text())


if __name__ == "__main__":
    main()
