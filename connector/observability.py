"""Logging: text or JSON lines, each record carrying the ids of what it was about.

Three ids ride in context variables and are put on every record by `LogContextFilter`
(attached to the handlers, so records of every logger get them):
- `request_id`: the `Request-Id` of the HTTP request being served (`connector.api.context`);
- `event_id`: the Stripe event whose handler runs (`webhooks.processing`);
- `subscription_id`: the subscription being synced (`sync.drain`).
An id is on a record only while it is bound: `with log_context(subscription_id=...)`.

Only the standard library and python-json-logger here: every layer may bind ids, and the
entry points (`connector.cli`, `connector.server`, the demo) configure the handlers.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import IO, Any, Literal

from pythonjsonlogger.json import JsonFormatter

LogFormat = Literal["text", "json"]
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# What a JSON line holds besides the message's own extras, under these names.
_JSON_FIELDS = ("asctime", "levelname", "name", "message")
_JSON_RENAMED = {"asctime": "timestamp", "levelname": "level", "name": "logger"}
# The logger names whose every HTTP call / migration step / job run is a line: warnings only.
CHATTY_LOGGERS = ("stripe", "alembic", "apscheduler")

_request_id: ContextVar[str | None] = ContextVar("seatsync_request_id", default=None)
_event_id: ContextVar[str | None] = ContextVar("seatsync_event_id", default=None)
_subscription_id: ContextVar[str | None] = ContextVar("seatsync_subscription_id", default=None)
_IDS: dict[str, ContextVar[str | None]] = {
    "request_id": _request_id,
    "event_id": _event_id,
    "subscription_id": _subscription_id,
}


def bind_request_id(request_id: str | None) -> None:
    """The request being served on this thread (None when it is over)."""
    _request_id.set(request_id)


@contextmanager
def log_context(
    *, event_id: str | None = None, subscription_id: str | None = None
) -> Iterator[None]:
    """Bind ids for the records logged inside the block; the previous ones come back after."""
    tokens = []
    if event_id is not None:
        tokens.append((_event_id, _event_id.set(event_id)))
    if subscription_id is not None:
        tokens.append((_subscription_id, _subscription_id.set(subscription_id)))
    try:
        yield
    finally:
        for var, token in reversed(tokens):
            var.reset(token)


def current_ids() -> dict[str, str]:
    """The ids bound now (only those that are)."""
    return {name: value for name, var in _IDS.items() if (value := var.get()) is not None}


class LogContextFilter(logging.Filter):
    """Puts the bound ids on each record (as attributes: JSON shows them as fields)."""

    def filter(self, record: logging.LogRecord) -> bool:
        for name, value in current_ids().items():
            if not hasattr(record, name):  # an id passed in `extra=` wins
                setattr(record, name, value)
        return True


class JsonLogFormatter(JsonFormatter):
    """One JSON object a line: timestamp (ISO 8601, UTC), level, logger, message, the bound
    ids, any `extra=` fields, and `exc_info` for exceptions."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(list(_JSON_FIELDS), rename_fields=_JSON_RENAMED, timestamp=False, **kwargs)

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        moment = datetime.fromtimestamp(record.created, UTC)
        return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


class TextLogFormatter(logging.Formatter):
    """The text line, then the ids on the record: `... message [request_id=req_...]`."""

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        ids = " ".join(f"{name}={value}" for name in _IDS if (value := getattr(record, name, None)))
        if not ids:
            return line
        first, newline, rest = line.partition("\n")  # after the message, before a traceback
        return f"{first} [{ids}]{newline}{rest}"


def make_formatter(log_format: LogFormat) -> logging.Formatter:
    return JsonLogFormatter() if log_format == "json" else TextLogFormatter()


def make_handler(log_format: LogFormat, stream: IO[str] | None = None) -> logging.Handler:
    """A stream handler (standard error by default) in the format, ids attached."""
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(make_formatter(log_format))
    handler.addFilter(LogContextFilter())
    return handler


def configure_logging(level: str, log_format: LogFormat = "text") -> None:
    """The process's logging, once, at an entry point: the root logger writes to standard
    error in the format (unless something configured it first, as pytest does); the chatty
    libraries only say warnings and worse."""
    logging.basicConfig(level=level, handlers=[make_handler(log_format)])
    for chatty in CHATTY_LOGGERS:
        logging.getLogger(chatty).setLevel(max(logging.WARNING, logging.getLevelName(level)))


def format_root_handlers(log_format: LogFormat) -> None:
    """Put the format and the ids on the handlers an entry point already gave the root
    logger (the demo's command configures logging before it reads the settings)."""
    for handler in logging.getLogger().handlers:
        handler.setFormatter(make_formatter(log_format))
        if not any(isinstance(f, LogContextFilter) for f in handler.filters):
            handler.addFilter(LogContextFilter())


def gunicorn_log_config(level: str, log_format: LogFormat) -> dict[str, Any]:
    """gunicorn's `logconfig_dict`: its error and access logs (and the root logger, which
    gunicorn would otherwise reset) in the same format, ids attached."""
    stream_handler = {
        "class": "logging.StreamHandler",
        "formatter": log_format,
        "filters": ["ids"],
    }
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"ids": {"()": LogContextFilter}},
        "formatters": {
            "json": {"()": JsonLogFormatter},
            "text": {"()": TextLogFormatter},
        },
        "handlers": {
            "stderr": {**stream_handler, "stream": "ext://sys.stderr"},
            "stdout": {**stream_handler, "stream": "ext://sys.stdout"},
        },
        "root": {"level": level, "handlers": ["stderr"]},
        "loggers": {
            "gunicorn.error": {"level": level, "handlers": ["stderr"], "propagate": False},
            "gunicorn.access": {"level": "INFO", "handlers": ["stdout"], "propagate": False},
        },
    }
