"""Helpers the tests import (fixtures stay in conftest.py, which pytest loads itself)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import Engine

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


def buying(headers: dict[str, str]) -> dict[str, str]:
    """Headers for a request that can charge money: a fresh Idempotency-Key is required."""
    return {**headers, "Idempotency-Key": f"test-{uuid.uuid4()}"}
