"""Domain errors web's modules raise; the API maps `status` to the HTTP response."""


class DomainError(Exception):
    status = 400


class NotFound(DomainError):
    status = 404


class Conflict(DomainError):
    status = 409
