"""Benchmark the attribution hot paths against peers, in one run on the same model, images and settings.

  1. our batched IG vs captum.attr.IntegratedGradients (riemann_right, same steps), each at several path-point
     chunk sizes (our max_points, Captum's internal_batch_size; the best of each is reported), with the max abs
     difference of the attributions;
  2. our batched top-k attribution attack vs a one-image-at-a-time loop of the same algorithm (the reference's way),
     and vs its pass-count bound; then with `skip_converged` (our default: images at a fixed point are dropped);
  3. the metrics' share of attack time, and our batched Kendall / Spearman vs scipy loops on the same maps;
  4. every other explainer vs its Captum counterpart at Captum's best settings, with the max abs difference:
     gradient vs Saliency(abs=False), grad_x_input vs InputXGradient, smoothgrad vs NoiseTunnel(Saliency) (best
     nt_samples_batch_size; values compared on Captum's own noise draws), gradcam vs LayerGradCam + interpolate.

Prints a table of medians and ratios and writes it as JSON next to --output. Example (about a minute on 2 CPU cores):

    python scripts/bench_attributions.py --images 8 --attack-steps 5
    python scripts/bench_attributions.py --checkpoint outputs/train/<run> --device cuda --images 64
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch
from scipy import stats

from attrobust.attacks import ATTRIBUTION_ATTACKS
from attrobust.attributions import integrated_gradients, logit_of
from attrobust.explainers import EXPLAINERS
from attrobust.explainers.smoothgrad import smooth
from attrobust.data import DATASETS
from attrobust.metrics import kendall_tau_b, spearman_rho
from attrobust.models import build_model
from attrobust.trained import restore_checkpoint


def median_time(fn: Callable[[], object], repeats: int, warmup: int = 1, device: torch.device | None = None) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        if device is not None and device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if device is not None and device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def interleaved_medians(variants: dict[str, Callable[[], object]], repeats: int, warmup: int = 1,
                        device: torch.device | None = None) -> dict[str, float]:
    """Median seconds of each variant, timed one after another within every repeat (after `warmup` rounds)."""
    times: dict[str, list[float]] = {name: [] for name in variants}
    for round_ in range(warmup + repeats):
        for name, fn in variants.items():
            seconds = median_time(fn, 1, warmup=0, device=device)
            if round_ >= warmup:
                times[name].append(seconds)
    return {name: statistics.median(values) for name, values in times.items()}


def load(args: argparse.Namespace, device: torch.device):
    from omegaconf import OmegaConf

    if args.checkpoint:
        model, splits, payload = restore_checkpoint(args.checkpoint)
        model_name = payload["model_cfg"]["name"]
    else:
        dataset_cfg = OmegaConf.to_container(OmegaConf.load(Path(__file__).parents[1] / "conf/dataset/mnist_mini.yaml"))
        dataset_cfg.pop("defaults", None)
        spec = DATASETS.build(dataset_cfg)
        splits = spec.load()
        torch.manual_seed(0)
        model = build_model({"name": args.model}, spec, splits.image_shape, splits.num_classes)
        model_name = args.model
    test = splits.test
    model.to(device).eval()
    x, y = test.batch(slice(0, args.images), device)
    with torch.no_grad():
        y = model(x).argmax(1)  # attack the model's own predictions: every image counts
    return model, x, y, model_name


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", help="a training run dir or .pt (default: an untrained model)")
    parser.add_argument("--model", default="madry_cnn", help="model when no checkpoint is given")
    parser.add_argument("--images", type=int, default=8)
    parser.add_argument("--ig-steps", type=int, default=100)
    parser.add_argument("--attack-steps", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_arguments(parser)
    parser.add_argument("--output", default="outputs/bench/attributions.json")
    args = parser.parse_args()
    meta, rows = attribution_rows(args)
    print(json.dumps(meta))
    for row in rows:
        speed = f"{row['speedup']:.2f}x" if row["speedup"] is not None else ""
        peer = f"{row['peer']} {row['peer_s']:.3f} s" if row["peer_s"] is not None else ""
        print(f"{row['task']:<48} ours {row['ours_s']:.3f} s  {peer:<48} {speed:>7}  {row['note']}")
    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps({"meta": meta, "rows": rows}, indent=2))
    print(f"wrote {output}")


def attribution_rows(args: argparse.Namespace) -> tuple[dict, list[dict]]:
    """IG vs Captum, batched attack vs one image at a time (and vs its pass-count bound), metrics vs scipy."""
    device = torch.device(args.device)
    model, x, y, model_name = load(args, device)
    rows: list[dict[str, object]] = []

    def record(task: str, ours: float, peer: str, theirs: float, note: str = "") -> None:
        rows.append({"task": task, "ours_s": ours, "peer": peer, "peer_s": theirs, "speedup": theirs / ours,
                     "note": note})

    # 1. IG vs Captum, every chunk size of both timed in turn within each repeat (a slow spell hits all alike)
    ours_ig = integrated_gradients(logit_of(model, y), x, steps=args.ig_steps)
    variants: dict[str, Callable[[], object]] = {
        f"ours {points}": lambda points=points: integrated_gradients(logit_of(model, y), x, steps=args.ig_steps,
                                                                     max_points=points)
        for points in (None, 100, 400, 1600)}
    try:
        from captum.attr import IntegratedGradients
    except ImportError:
        print("captum is not installed (pip install captum): IG comparison skipped")
        times = interleaved_medians(variants, args.repeats, device=device)
        t_ours = min(times.values())
    else:
        captum = IntegratedGradients(model)

        def captum_ig(internal: int | None) -> torch.Tensor:
            return captum.attribute(x, baselines=torch.zeros_like(x), target=y, n_steps=args.ig_steps,
                                    method="riemann_right", internal_batch_size=internal)

        variants.update({f"captum {internal}": lambda internal=internal: captum_ig(internal)
                         for internal in (None, 100, 400, 1600)})
        times = interleaved_medians(variants, args.repeats, device=device)
        best_ours = min((k for k in times if k.startswith("ours")), key=times.__getitem__)
        best_captum = min((k for k in times if k.startswith("captum")), key=times.__getitem__)
        t_ours = times[best_ours]
        internal = None if best_captum.endswith("None") else int(best_captum.split()[1])
        diff = (captum_ig(internal) - ours_ig).abs().max().item()
        record(f"IG {args.images} images x {args.ig_steps} steps", t_ours, f"captum (internal_batch_size={internal})",
               times[best_captum], f"ours with max_points={best_ours.split()[1]}; max abs diff {diff:.2e}")

    # 2. batched top-k attack vs one image at a time (same algorithm, same settings), without skipping converged
    # images (the reference's way), then our default with skipping against that same loop. The variants are timed
    # in turn within each repeat, so that a slow spell of the machine hits them all alike.
    settings = {"name": "topk", "eps": 0.3, "steps": args.attack_steps, "step_size": 0.01, "k": 200, "eval_k": 100,
                "restarts": 1}
    ig = EXPLAINERS.build({"name": "ig", "steps": args.ig_steps})
    attack = ATTRIBUTION_ATTACKS.build({**settings, "skip_converged": False}, explainer=ig)
    skipping = ATTRIBUTION_ATTACKS.build({**settings, "skip_converged": True}, explainer=ig)
    chunks = sorted(c for c in {2, 4, args.images} if 1 < c <= args.images)
    variants = {
        "loop": lambda: [attack.run(model, x[i:i + 1], y[i:i + 1]) for i in range(len(y))]}
    for chunk in chunks:
        variants[f"chunks of {chunk}"] = lambda chunk=chunk: [attack.run(model, x[i:i + chunk], y[i:i + chunk])
                                                              for i in range(0, len(y), chunk)]
    variants["skip"] = lambda: skipping.run(model, x, y)
    times = interleaved_medians(variants, args.repeats, device=device)
    # pass-count bound: per step the direction (IG with create_graph, then its gradient: 2 IGs) and the selection's
    # ReLU saliency (1 IG; skipped for an iterate that changed the label); plus the original map: (3 steps + 1) IGs
    bound = (3 * args.attack_steps + 1) * t_ours
    for chunk in chunks:
        t_batched = times[f"chunks of {chunk}"]
        record(f"top-k attack, {args.attack_steps} steps, chunks of {chunk}", t_batched, "one image at a time",
               times["loop"], f"{t_batched / bound:.2f}x its pass-count bound ({3 * args.attack_steps + 1} IGs)")
    fixed = int((~skipping.run(model, x, y).moved).sum())
    record(f"top-k attack, {args.attack_steps} steps, chunk of {len(y)}, skip_converged", times["skip"],
           "one image at a time", times["loop"], f"{fixed} of {len(y)} images at a fixed point from step 1 (unmoved)")

    # 3. metrics: share of attack time, and against scipy
    result = attack.run(model, x, y)
    a, b = result.original_saliency, result.perturbed_saliency
    t_kendall = median_time(lambda: kendall_tau_b(a, b), args.repeats, device=device)
    t_spearman = median_time(lambda: spearman_rho(a, b), args.repeats, device=device)
    a_np, b_np = a.cpu().numpy(), b.cpu().numpy()
    t_scipy_k = median_time(lambda: [stats.kendalltau(p, q) for p, q in zip(a_np, b_np, strict=True)], args.repeats)
    t_scipy_s = median_time(lambda: [stats.spearmanr(p, q) for p, q in zip(a_np, b_np, strict=True)], args.repeats)
    pairs = list(zip(a_np, b_np, strict=True))
    kendall_diff = max(abs(float(t) - stats.kendalltau(p, q).statistic) for t, (p, q) in zip(
        kendall_tau_b(a, b).cpu(), pairs, strict=True))
    spearman_diff = max(abs(float(r) - stats.spearmanr(p, q).statistic) for r, (p, q) in zip(
        spearman_rho(a, b).cpu(), pairs, strict=True))
    record(f"Kendall tau-b, {len(a)} maps of {a.shape[1]}", t_kendall, "scipy.stats.kendalltau loop", t_scipy_k,
           f"max abs diff to scipy {kendall_diff:.1e}")
    record(f"Spearman rho, {len(a)} maps of {a.shape[1]}", t_spearman, "scipy.stats.spearmanr loop", t_scipy_s,
           f"max abs diff to scipy {spearman_diff:.1e}")
    t_attack = median_time(lambda: attack.run(model, x, y), 1, warmup=0, device=device)
    share = (args.attack_steps + 1) * t_kendall / t_attack  # one selection Kendall per step, plus the final scores
    rows.append({"task": "metrics share of top-k attack time", "ours_s": t_attack, "peer": "", "peer_s": None,
                 "speedup": None, "note": f"{100 * share:.2f}% (Kendall per step + final scores)"})

    rows += explainer_rows(model, x, y, args.repeats, device)
    meta = {"device": str(device), "threads": torch.get_num_threads(), "dtype": str(x.dtype),
            "torch": torch.__version__, "python": platform.python_version(), "model": model_name,
            "images": args.images, "ig_steps": args.ig_steps, "attack_steps": args.attack_steps}
    return meta, rows


def explainer_rows(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, repeats: int,
                   device: torch.device) -> list[dict]:
    """Each explainer other than IG against its Captum counterpart, Captum at its fastest setting."""
    try:
        from captum.attr import InputXGradient, LayerAttribution, LayerGradCam, NoiseTunnel, Saliency
    except ImportError:
        return [{"task": "explainers vs Captum", "note": "captum not installed (pip install captum)"}]
    rows = []

    def compare(name: str, peer: str, theirs: dict[str, Callable[[], torch.Tensor]],
                diff: Callable[[], float] | None = None) -> None:
        ours = EXPLAINERS.build({"name": name})
        variants = {"ours": lambda: ours.explain(model, x, y), **{f"captum {k}": run for k, run in theirs.items()}}
        timed = interleaved_medians(variants, repeats, device=device)  # in turn: a slow spell hits all alike
        t_ours = timed.pop("ours")
        setting = min(timed, key=timed.__getitem__).removeprefix("captum ")
        timed = {k.removeprefix("captum "): v for k, v in timed.items()}
        gap = diff() if diff is not None else (ours.explain(model, x, y) - theirs[setting]()).abs().max().item()
        rows.append({"task": f"{ours.describe()}, {len(y)} images", "ours_s": t_ours,
                     "peer": f"captum {peer}{setting}", "peer_s": timed[setting], "speedup": timed[setting] / t_ours,
                     "note": f"max abs diff {gap:.1e}"})

    compare("gradient", "Saliency(abs=False)", {"": lambda: Saliency(model).attribute(x, target=y, abs=False)})
    compare("grad_x_input", "InputXGradient", {"": lambda: InputXGradient(model).attribute(x, target=y)})

    sg = EXPLAINERS.build({"name": "smoothgrad"})
    sigma = sg.noise_level * (x.flatten(1).amax(1) - x.flatten(1).amin(1))
    if bool((sigma == sigma[0]).all()):  # Captum takes one stdev per input tensor, ours is per image
        stdev = float(sigma[0])

        def noise_tunnel(batch: int | None) -> torch.Tensor:
            return NoiseTunnel(Saliency(model)).attribute(x, nt_type="smoothgrad", nt_samples=sg.samples,
                                                          nt_samples_batch_size=batch, stdevs=stdev, target=y,
                                                          abs=False)

        def same_draws() -> float:
            torch.manual_seed(0)
            expected = noise_tunnel(None)
            torch.manual_seed(0)
            noise = torch.normal(0, torch.tensor(stdev, device=x.device).repeat((len(x) * sg.samples, *x.shape[1:])))
            noise = noise.view(len(x), sg.samples, *x.shape[1:]).transpose(0, 1)
            ours = smooth(lambda z, t: sg.inner.explain(model, z, t), x, y, noise, sg.samples)
            return (ours - expected).abs().max().item()

        compare("smoothgrad", "NoiseTunnel(Saliency) nt_samples_batch_size=",
                {str(b): lambda b=b: noise_tunnel(b) for b in (None, 10, 25)}, same_draws)
    layer = model.get_submodule(model.traits.cam_layer)

    def gradcam() -> torch.Tensor:
        cam = LayerGradCam(model, layer).attribute(x, target=y, relu_attributions=True)
        return LayerAttribution.interpolate(cam, tuple(x.shape[-2:]), interpolate_mode="bilinear")

    compare("gradcam", "LayerGradCam + interpolate", {"": gradcam})
    return rows


if __name__ == "__main__":
    main()
