"""User-facing errors: one clear line, a non-zero exit, no traceback."""

from __future__ import annotations

from collections.abc import Iterable


class AttrobustError(Exception):
    """A mistake in the user's input or environment (bad value, missing file), reported as one line.

    Bugs are not AttrobustErrors: they keep their traceback.
    """


def choices(values: Iterable[str]) -> str:
    """Format valid choices for an error message: 'a, b, c'."""
    return ", ".join(sorted(values))
