"""Domain errors of the volume server. Each carries the HTTP status the API maps it to (only
`api.py` turns them into responses) and a message that says what was wrong and where."""

from __future__ import annotations

from airside.core.errors import Conflict, DomainError, NotFound


class VolumeError(DomainError):
    status = 500


class VolumeNotFound(VolumeError, NotFound):
    status = 404


class VolumeConflict(VolumeError, Conflict):
    """The volume exists, has children, is busy, or is marked failed."""

    status = 409


class InvalidRequest(VolumeError):
    """A bad strategy, handle, property, sub-path, or a hostile tar entry."""

    status = 422


class BadStream(VolumeError):
    """The body is not a readable tar stream (truncated, corrupt, wrong encoding)."""

    status = 400


class StreamTooLarge(VolumeError):
    status = 413


class PeerError(VolumeError):
    """Another volume server (stream-from) answered with an error or could not be reached."""

    status = 502


class DriverUnavailable(Exception):
    """The chosen driver cannot work with this volume dir; the message names the fix."""
