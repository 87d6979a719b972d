"""MkDocs hook: the component catalogue (docs/catalogue.md) is generated from attrobust's registries and config
folders when the site is built, so it lists exactly what `attrobust list` does and cannot go stale."""

from __future__ import annotations

import inspect
import sys
from typing import Any

MARKER = "<!-- catalogue -->"


def first_paragraph(text: str) -> str:
    return " ".join((text or "").strip().split("\n\n")[0].split()).replace("|", "\\|")


def table(rows: list[tuple[str, str, str]]) -> str:
    lines = ["| option | settings (defaults) | what it is |", "|---|---|---|"]
    lines += [f"| `{name}` | {settings} | {about} |" for name, settings, about in rows]
    return "\n".join(lines)


def settings_of(builder: Any, context: tuple[str, ...] = ()) -> str:
    parameters = [p for p in inspect.signature(builder).parameters.values() if p.name not in context]
    shown = [f"`{p.name}`" + ("" if p.default is inspect.Parameter.empty else f"={p.default!r}".replace("|", "\\|"))
             for p in parameters]
    return ", ".join(shown) or "none"


def module_summary(builder: Any) -> str:
    """The first paragraph of the docstring of the module that defines `builder`."""
    return first_paragraph(sys.modules[builder.__module__].__doc__ or "")


def catalogue() -> str:
    from attrobust.attacks import ATTRIBUTION_ATTACKS, PREDICTION_ATTACKS
    from attrobust.config import GROUPS, config_dir, group_options
    from attrobust.data import DATASETS
    from attrobust.explainers import EXPLAINERS
    from attrobust.listing import description
    from attrobust.metrics import METRICS
    from attrobust.models import MODELS
    from attrobust.optim import OPTIMIZERS
    from attrobust.parts import part_classes
    from attrobust.regularizers import REGULARIZERS
    from attrobust.tracking import LOGGERS

    registries = {"dataset": [DATASETS], "model": [MODELS], "reg": [REGULARIZERS], "explainer": [EXPLAINERS],
                  "optim": [OPTIMIZERS], "attack": [PREDICTION_ATTACKS, ATTRIBUTION_ATTACKS],
                  "logger": [LOGGERS]}
    context = ("in_channels", "image_size", "num_classes", "explainer")
    out = []
    for group in GROUPS:
        rows = []
        for name in group_options(group):
            about = description(config_dir() / group / f"{name}.yaml")
            builder = next((r.get(name) for r in registries[group] if name in r.names()), None)
            rows.append((name, settings_of(builder, context) if builder is not None else "see its YAML",
                         first_paragraph(about)))
        out.append(f"## `{group}=`\n\n{table(rows)}\n")
    families = [("eval.metrics", METRICS)] + [(f"eval.{part.setting}", part.measures) for part in part_classes()
                                              if part.setting is not None and part.measures is not METRICS]
    for key, registry in families:
        rows = [(name, settings_of(registry.get(name)), module_summary(registry.get(name)))
                for name in registry.names()]
        out.append(f"## `{key}=[...]`\n\n{table(rows)}\n")
    out.append(metric_cards(METRICS))
    out.extend(family_cards(key, registry) for key, registry in families[1:])
    parts = [(part.registry_name, f"`eval.{part.setting}`" if part.setting else "by the command",
              module_summary(part)) for part in part_classes()]
    out.append("## Evaluation parts\n\n" + table(parts).replace("settings (defaults)", "asked for by") + "\n")
    return "\n".join(out)


RANDOM_PAIRS, SIZE, K = 256, (28, 28), 100


def metric_cards(metrics: Any) -> str:
    """Per map metric: heading, unit, direction, the value of identical maps (also what an image without a counted
    iterate scores), and what two independent random maps score, computed here when the site is built: 256 pairs of
    28x28 maps of uniform noise normalised to a pixel mean of 1 as saliency maps are, top-k measures at k = 100,
    seeded; mean and [min, max]. Map metrics cost no network pass: they compare maps the attack already computed."""
    import torch

    from attrobust.metrics import MapSpec

    generator = torch.Generator().manual_seed(0)
    pixels = SIZE[0] * SIZE[1]
    a, b = (torch.rand(RANDOM_PAIRS, pixels, generator=generator, dtype=torch.float64) for _ in range(2))
    a, b = a / a.mean(1, keepdim=True), b / b.mean(1, keepdim=True)
    rows = ["| metric | heading | unit | better | identical maps | random maps: mean [min, max] | cost per image |",
            "|---|---|---|---|---|---|---|"]
    for name in metrics.names():
        metric = metrics.build({"name": name})
        values = metric(a, b, MapSpec(SIZE, K)).double() * metric.scale
        unit = metric.unit or "none"
        rows.append(f"| `{name}` | {metric.heading} | {unit} | {'higher' if metric.higher_is_better else 'lower'} | "
                    f"{metric.identical * metric.scale:g} | {values.mean().item():.4g} [{values.min().item():.4g}, "
                    f"{values.max().item():.4g}] | {cost(metric.passes())} |")
    return ("## Measure cards (`eval.metrics`)\n\n" + first_paragraph(metric_cards.__doc__ or "") + "\n\n" +
            "\n".join(rows) + "\n")


def cost(passes: dict[str, int]) -> str:
    """A measure's passes per image in words ("none" for none)."""
    said = [f"{passes['forward']} forward passes"] if passes["forward"] else []
    said += [f"{passes['explainer']} explainer calls"] if passes["explainer"] else []
    return " + ".join(said) or "none"


def family_cards(key: str, registry: Any) -> str:
    """The cards of a family of measures other than the map metrics: heading, unit, direction, and the cost per
    image at the defaults (each explainer call costs the explainer's own passes: IG with m points, m of them)."""
    rows = ["| measure | heading | unit | better | cost per image (defaults) |", "|---|---|---|---|---|"]
    for name in registry.names():
        measure = registry.build({"name": name})
        rows.append(f"| `{name}` | {measure.heading} | {measure.unit or 'none'} | "
                    f"{'higher' if measure.higher_is_better else 'lower'} | {cost(measure.passes())} |")
    return f"## Measure cards (`{key}`)\n\n" + first_paragraph(family_cards.__doc__ or "") + "\n\n" + \
        "\n".join(rows) + "\n"


def on_page_markdown(markdown: str, page: Any, **kwargs: Any) -> str:
    return markdown.replace(MARKER, catalogue()) if MARKER in markdown else markdown
