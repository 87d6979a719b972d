"""User-facing errors: one clear line, a non-zero exit, no traceback."""

from __future__ import annotations

import errno
from collections.abc import Iterable


class AttrobustError(Exception):
    """A mistake in the user's input or environment (bad value, missing file), reported as one line.

    Bugs are not AttrobustErrors: they keep their traceback.
    """


def choices(values: Iterable[str]) -> str:
    """Format valid choices for an error message: 'a, b, c'."""
    return ", ".join(sorted(values))


# what to do about an environment fault, by errno
_FIXES = {
    errno.ENOSPC: "free some space and run the same command again (a training run resumes from its last.pt)",
    errno.EDQUOT: "free some space and run the same command again (a training run resumes from its last.pt)",
    errno.EACCES: "check its permissions, or use another folder (runs: hydra.run.dir=DIR, data: paths.data=DIR)",
    errno.EPERM: "check its permissions, or use another folder (runs: hydra.run.dir=DIR, data: paths.data=DIR)",
    errno.EROFS: "it is on a read-only filesystem; use another folder (runs: hydra.run.dir=DIR)",
}


def describe_os_error(error: OSError) -> str:
    """One line for an environment fault (permissions, full disk, ...): the cause, the path and what to do."""
    where = str(error.filename) if error.filename is not None else "a file"
    if error.filename2 is not None:
        where += f" -> {error.filename2}"
    cause = error.strerror or str(error) or type(error).__name__
    return f"{cause}: {where}; {_FIXES.get(error.errno or 0, 'check the path and run the same command again')}"
