"""Whether an attack on explanations can work on maps of a given size: a top-k that holds the whole map, or a
selection metric that needs more pixels than the map has, is refused in one line before any work."""

from __future__ import annotations

from typing import TYPE_CHECKING

from attrobust.errors import AttrobustError

if TYPE_CHECKING:
    from attrobust.attacks.attribution import AttributionAttack


def auto_top_k(pixels: int) -> int:
    """The top-k of a `k: null` setting: an eighth of the map, as the reference's 100 of 784, at most 100."""
    return max(1, min(100, pixels // 8))


def check_fits(attack: AttributionAttack, height: int, width: int, key: str) -> None:
    """Refuse a top-k that holds the whole map (`key`: where the attack is configured, e.g. attack), both settings
    in one line: with `eval_k` every pixel would be in both top-k sets and each image would score an IN of 1
    whatever the attack did; with `k` the top-k objective would be the map's constant total, so the attack would
    have no direction."""
    pixels = height * width
    why = {"k": "the top-k objective would be the whole map's constant total and the attack would not move",
           "eval_k": "every image would score 1 whatever the attack did"}
    problems = []
    for name in ("k", "eval_k"):
        value = getattr(attack, name)
        if value is not None and value >= pixels:
            relation = "more than" if value > pixels else "all of"
            problems.append(f"{key}.{name}={value} is {relation} the {pixels} pixels of a {height}x{width} "
                            f"saliency map, so {why[name]}")
    if problems:
        names = " and ".join(f"{key}.{name}" for name in ("k", "eval_k") if f"{key}.{name}=" in "".join(problems))
        raise AttrobustError(f"{'; '.join(problems)}; choose {names} < {pixels}, or null for an eighth of the map "
                             f"({auto_top_k(pixels)}; the reference uses 100 of 784)")
    selection = attack.selection
    if selection is not None:
        try:
            selection.check_fits(height, width)
        except ValueError as error:
            raise AttrobustError(f"{key}.measure={attack.measure} cannot select on {height}x{width} maps: "
                                 f"{error}") from None
