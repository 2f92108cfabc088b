"""Helpers the tests import (fixtures stay in conftest.py, which pytest loads itself)."""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine, event

from connector.adapters.database import make_engine


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]


@dataclass
class Database:
    """A test database: which backend, and a URL every process can reach it by."""

    backend: str
    url: str

    def engine(self) -> Engine:
        return make_engine(self.url)


def until(condition: Callable[[], bool], seconds: float = 5.0) -> bool:
    """Whether `condition` comes true within `seconds` (for what another thread does)."""
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def buying(headers: dict[str, str]) -> dict[str, str]:
    """Headers for a request that can charge money: a fresh Idempotency-Key is required."""
    return {**headers, "Idempotency-Key": f"test-{uuid.uuid4()}"}


@contextmanager
def statements(engine: Engine) -> Iterator[list[str]]:
    """The first words of every statement sent while inside (BEGIN, COMMIT and ROLLBACK are
    the driver's own: not counted, except SQLite's explicit BEGIN IMMEDIATE)."""
    sent: list[str] = []

    def note(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        statement = statement.replace('"', "")
        words = statement.split()
        if words[0] == "WITH":  # its writes, in order: "WITH UPDATE <table>, INSERT <table>"
            writes = re.findall(r"\b(UPDATE|INSERT INTO) (\w+)", statement)
            sent.append("WITH " + ", ".join(f"{verb.split()[0]} {table}" for verb, table in writes))
        elif words[0] in ("INSERT", "UPDATE"):  # INSERT INTO <table>, UPDATE <table>
            sent.append(f"{words[0]} {words[2] if words[0] == 'INSERT' else words[1]}")
        else:
            sent.append(" ".join(words[:2]) if words[0] == "BEGIN" else words[0])

    event.listen(engine, "before_cursor_execute", note)
    try:
        yield sent
    finally:
        event.remove(engine, "before_cursor_execute", note)
