"""The base of domain errors: each carries the HTTP status an API maps it to and a message that says
what was wrong and where (web's registry/builds errors, the volume server's errors)."""


class DomainError(Exception):
    status = 400

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class NotFound(DomainError):
    status = 404


class Conflict(DomainError):
    status = 409
