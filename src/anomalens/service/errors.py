"""Errors the service answers with an HTTP status and a message naming the problem."""

from typing import ClassVar

from anomalens.errors import AnomalensError


class ServiceError(AnomalensError):
    """A request the server refuses; `status` is the HTTP status it answers with."""

    status: ClassVar[int] = 400


class NotFound(ServiceError):
    """The model, job or defect type named in the request does not exist."""

    status = 404


class Conflict(ServiceError):
    """The request clashes with what exists (a model name already taken)."""

    status = 409


class TooLarge(ServiceError):
    """An upload is over one of the server's limits."""

    status = 413


class Busy(ServiceError):
    """The server has as much queued work as it takes; the client may retry later."""

    status = 503
