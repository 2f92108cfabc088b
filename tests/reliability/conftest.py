"""Reliability tests run real processes against PostgreSQL (several processes share one
database; SQLite is for one machine and one writer): `postgres` is the session's PostgreSQL
schema, emptied for the test. Skipped when PostgreSQL is unreachable, like every PostgreSQL
test (an error when SEATSYNC_REQUIRE_POSTGRES=1)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import text

from connector.adapters.models import Base
from tests.helpers import Database


@pytest.fixture
def postgres(_postgres_schema: Database) -> Iterator[Database]:
    engine = _postgres_schema.engine()
    tables = ", ".join(f'"{table.name}"' for table in reversed(Base.metadata.sorted_tables))
    with engine.begin() as connection:
        connection.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
    engine.dispose()
    yield _postgres_schema
