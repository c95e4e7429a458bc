"""The one path sanitizer: tar members (stream-in), image layer entries and task paths all split a
path with `clean_parts`, so the rule for what may name a place inside a volume, a root file system
or a working directory is written once.

The rule: a path is a sequence of components separated by ``/``; empty components and ``.`` are
dropped; ``..`` anywhere, or a NUL byte, refuses the whole path (never normalised away: ``a/../b``
is refused, not read as ``b``). A leading ``/`` is refused unless the caller says the path is
rooted (`rooted=True`: image layers and container root file systems, where ``/`` means the root the
path lives under). Symlinks are not this module's business: callers that write walk the parts with
``lstat`` (see `airside.baggageclaim.streaming.sub_path`).
"""

from __future__ import annotations


class UnsafePath(ValueError):
    """A path refused by `clean_parts`. `str(e)` says what is wrong but not which path or where:
    the caller names both (a tar entry, an image layer, a task field)."""


def clean_parts(name: str, *, rooted: bool = False) -> list[str]:
    """The components of `name`, with empty ones and ``.`` dropped (``""`` and ``.`` give ``[]``).

    Raises `UnsafePath` for a NUL byte, a ``..`` component, or (unless `rooted`) a leading ``/``."""
    if "\x00" in name:
        raise UnsafePath("NUL byte in path")
    if name.startswith("/") and not rooted:
        raise UnsafePath("absolute path")
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise UnsafePath("path traversal (..)")
    return parts
