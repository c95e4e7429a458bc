"""Domain errors web's modules raise; the API maps `status` to the HTTP response."""

from airside.core.errors import Conflict, DomainError, NotFound

__all__ = ["Conflict", "DomainError", "NotFound"]
