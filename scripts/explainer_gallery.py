"""The maps of several explainers for the same test images of one trained model, side by side (images down,
explainers across; each map is the saliency map attacks score: |attribution| summed over channels).

    python scripts/explainer_gallery.py --checkpoint outputs/train/<run> --indices 0 1 2 \
        --explainers gradient ig gradcam attention_rollout attention_gradient --out docs/img/gallery.png

An explainer that cannot read the model (Grad-CAM without a layer, attention maps of a CNN) is one line and no
figure.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from attrobust.attributions import saliency_map
from attrobust.errors import AttrobustError
from attrobust.explainers import EXPLAINERS
from attrobust.trained import restore_checkpoint


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", required=True, help="a training run dir or its model.pt")
    parser.add_argument("--indices", type=int, nargs="+", default=[0, 1, 2, 3])
    parser.add_argument("--explainers", nargs="+", default=["gradient", "ig", "gradcam"],
                        help=f"registered explainers ({', '.join(EXPLAINERS.names())})")
    parser.add_argument("--out", type=Path, default=Path("outputs/gallery.png"))
    args = parser.parse_args()
    try:
        model, splits, payload = restore_checkpoint(args.checkpoint)
        explainers = [EXPLAINERS.build({"name": name}) for name in args.explainers]
        for explainer in explainers:
            explainer.check_model(model)
    except AttrobustError as error:
        parser.error(str(error))
    if any(not 0 <= i < len(splits.test) for i in args.indices):
        parser.error(f"--indices: the test split has images 0 .. {len(splits.test) - 1}")
    model.eval()
    x, y = splits.test.batch(torch.tensor(args.indices), torch.device("cpu"))
    with torch.no_grad():
        predicted = model(x).argmax(1)
    size = x.shape[-2:]
    maps = [saliency_map(explainer.explain(model, x, y)).view(len(x), *size) for explainer in explainers]
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    figure, axes = plt.subplots(len(x), 1 + len(explainers), figsize=(1.3 * (1 + len(explainers)), 1.3 * len(x)),
                                squeeze=False)
    for row, image in enumerate(x):
        axes[row, 0].imshow(image.permute(1, 2, 0).squeeze(-1), cmap="gray", vmin=0, vmax=1)
        axes[row, 0].set_ylabel(f"#{args.indices[row]}: {int(y[row])} ({int(predicted[row])})", fontsize=7)
        for column, values in enumerate(maps, start=1):
            axes[row, column].imshow(values[row], cmap="inferno")
    for column, explainer in enumerate(explainers, start=1):
        axes[0, column].set_title(explainer.describe().replace("(", "\n(", 1), fontsize=7)
    axes[0, 0].set_title("image: label (predicted)", fontsize=7)
    for axis in axes.flat:
        axis.set_xticks([])
        axis.set_yticks([])
    figure.suptitle(f"{payload['model_cfg']['name']} ({payload.get('reg_cfg', {}).get('name', '')}), run "
                    f"{Path(args.checkpoint).resolve().name}", fontsize=8)
    figure.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(args.out, dpi=110)
    print(args.out)


if __name__ == "__main__":
    main()
