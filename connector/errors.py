"""Errors a use case reports to its caller; the API maps each to an HTTP status."""

from __future__ import annotations

from typing import Any


class ServiceError(Exception):
    """A refused request. Nothing was changed. `message` tells a person what to do."""

    status = 400

    def __init__(self, code: str, message: str, **details: Any) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.details = details


class NotFound(ServiceError):
    status = 404


class Conflict(ServiceError):
    """The request is well-formed but the current state refuses it."""

    status = 409


class Invalid(ServiceError):
    status = 422


class UpstreamUnavailable(ServiceError):
    """Stripe could not be reached or failed; nothing was changed, retry later."""

    status = 503
