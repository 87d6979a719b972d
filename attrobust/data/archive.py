"""Safe extraction of the regular files of a tar archive, on every Python the project supports.

`tarfile`'s own `filter="data"` exists only from Python 3.11.4 (and 3.8.17, 3.9.17, 3.10.12), so the checks are
done here: a member is written only if it is a regular file whose name is relative and stays inside the destination
(no absolute path, no `..` part). A link or device among the members asked for rejects the whole archive, so a
crafted archive cannot write outside the destination or through a link. Nothing of the member's mode, owner or time
is applied: each file is created by this process with its default permissions.
"""

from __future__ import annotations

import shutil
import tarfile
from collections.abc import Iterable
from pathlib import Path, PurePosixPath

from attrobust.errors import AttrobustError


def safe_member_path(destination: Path, member: tarfile.TarInfo, archive: Path) -> Path:
    """Where `member` goes under `destination`, or one error naming it if it is not a plain relative file."""
    name = PurePosixPath(member.name)
    if not member.isfile():
        kind = "link" if member.issym() or member.islnk() else "special file"
        raise AttrobustError(f"unsafe archive {archive}: member {member.name!r} is a {kind}, not a regular file")
    if name.is_absolute() or ".." in name.parts or not name.parts or "\\" in member.name:
        raise AttrobustError(f"unsafe archive {archive}: member {member.name!r} is not a relative path inside it")
    return destination.joinpath(*name.parts)


def extract_regular_files(tar: tarfile.TarFile, members: Iterable[tarfile.TarInfo], destination: Path,
                          archive: Path) -> None:
    """Write each of `members` (regular files only, checked by `safe_member_path`) under `destination`."""
    members = list(members)
    targets = [safe_member_path(destination, member, archive) for member in members]  # check all before writing
    for member, target in zip(members, targets, strict=True):
        source = tar.extractfile(member)
        if source is None:  # only for non-files, excluded above
            raise AttrobustError(f"unsafe archive {archive}: member {member.name!r} has no data")
        target.parent.mkdir(parents=True, exist_ok=True)
        with source, open(target, "wb") as out:
            shutil.copyfileobj(source, out)
