"""Helpers the tests import (fixtures stay in conftest.py, which pytest loads itself)."""

from __future__ import annotations

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
