"""Every error leaves as JSON: `{"error": {"code", "message", "details"?}}`."""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import Any

from flask import Flask, Response, jsonify
from pydantic import BaseModel, ValidationError
from sqlalchemy.exc import DataError, IntegrityError, OperationalError, ProgrammingError
from werkzeug.exceptions import HTTPException

from connector.api.schemas import ErrorBody
from connector.errors import ServiceError

KEY_REQUIRED = (
    "this request can charge money: send an Idempotency-Key header (any string unique to "
    "this purchase, up to 255 characters, e.g. a UUID) and send the same key if you retry, "
    "so a retry never charges twice"
)

log = logging.getLogger(__name__)

# What any /v1 route may answer besides its own successes (documented in the OpenAPI).
COMMON_ERRORS: dict[str | int | HTTPStatus, type[BaseModel] | dict[Any, Any] | None] = {
    status: ErrorBody for status in (400, 401, 403, 404, 415, 422, 503)
}


def error_response(status: int, code: str, message: str, details: Any = None) -> Response:
    body: dict[str, Any] = {"code": code, "message": message}
    if details is not None:
        body["details"] = details
    response = jsonify({"error": body})
    response.status_code = status
    return response


def validation_error_response(error: ValidationError) -> Response:
    """flask-openapi3's hook for a body, path or query that fails its model."""
    problems = error.errors(include_url=False, include_context=False, include_input=False)
    if any(p["type"] == "missing" and p["loc"][-1:] == ("Idempotency-Key",) for p in problems):
        return error_response(400, "idempotency_key_required", KEY_REQUIRED)
    first = problems[0] if problems else {"loc": (), "msg": "invalid request"}
    where = ".".join(str(part) for part in first["loc"]) or "body"
    message = f"{where}: {first['msg']}"
    details = [
        {"field": ".".join(str(part) for part in p["loc"]), "problem": p["msg"]} for p in problems
    ]
    return error_response(422, "invalid_request", message, details)


def _not_migrated(error: OperationalError | ProgrammingError) -> bool:
    """A table or column the code needs is missing: SQLite's "no such table/column",
    PostgreSQL's undefined_table (42P01) / undefined_column (42703)."""
    message = str(error.orig)
    return (
        getattr(error.orig, "sqlstate", None) in ("42P01", "42703")
        or "no such table" in message
        or "no such column" in message
    )


def install_error_handlers(app: Flask) -> None:
    @app.errorhandler(ServiceError)
    def _service_error(error: ServiceError) -> Response:
        return error_response(error.status, error.code, error.message, error.details or None)

    @app.errorhandler(HTTPException)
    def _http_error(error: HTTPException) -> Response:
        if error.response is not None:  # already a full response (validation errors)
            return error.response  # type: ignore[return-value]
        code = (error.name or "error").lower().replace(" ", "_")
        response = error_response(error.code or 500, code, error.description or code)
        for name, value in error.get_headers():  # e.g. `Allow` on a 405
            if name.lower() != "content-type":
                response.headers[name] = value
        return response

    @app.errorhandler(DataError)
    def _data_error(error: DataError) -> Response:
        return error_response(422, "invalid_value", "a value is out of range or not storable")

    @app.errorhandler(IntegrityError)
    def _conflict(error: IntegrityError) -> Response:
        # Two requests created the same thing at once; the other one won.
        return error_response(
            409, "conflict", "a concurrent request changed the same thing; read it and retry"
        )

    @app.errorhandler(OperationalError)
    @app.errorhandler(ProgrammingError)
    def _database_unavailable(error: OperationalError | ProgrammingError) -> Response:
        if _not_migrated(error):
            log.error("database not migrated: %s", error)
            return error_response(
                503,
                "database_not_migrated",
                "the database is not migrated to this version: run `seatsync db upgrade`",
            )
        if isinstance(error, ProgrammingError):  # a bug, not an outage
            log.exception("database programming error")
            return error_response(
                500, "internal_error", "the connector failed unexpectedly; nothing was changed"
            )
        log.error("database unavailable: %s", error)
        return error_response(
            503, "database_unavailable", "the database cannot be reached; try again shortly"
        )

    @app.errorhandler(Exception)
    def _unexpected(error: Exception) -> Response:
        log.exception("unhandled error")
        return error_response(
            500, "internal_error", "the connector failed unexpectedly; nothing was changed"
        )
