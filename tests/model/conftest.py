"""Hypothesis profiles for the billing model, and a fresh world per example.

Profiles (pick with HYPOTHESIS_PROFILE; default "ci"):
- `ci`: 25 examples of at most 15 steps, derandomized (the same examples on every run, so
  CI is reproducible), no deadline: well under 90 s on SQLite and PostgreSQL together.
- `long`: the hunt — thousands of random examples of up to 30 steps, e.g.
  `HYPOTHESIS_PROFILE=long .venv/bin/python -m pytest -q tests/model -k sqlite -x`.
  A failure prints the shrunk steps and a `@reproduce_failure` blob.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

from tests.helpers import Database
from tests.model.harness import WorldFactory

_COMMON = {
    "deadline": None,
    "database": None,  # nothing written under the work tree
    "print_blob": True,
    "suppress_health_check": [HealthCheck.too_slow, HealthCheck.data_too_large],
}
settings.register_profile(
    "ci", max_examples=25, stateful_step_count=15, derandomize=True, **_COMMON
)
settings.register_profile(
    "long", max_examples=5000, stateful_step_count=30, derandomize=False, **_COMMON
)


def model_settings() -> settings:
    return settings.get_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


@pytest.fixture
def worlds(request: pytest.FixtureRequest, database: Database, tmp_path: Path) -> WorldFactory:
    template: Path | None = None
    if database.backend == "sqlite":
        template = request.getfixturevalue("_sqlite_template")
    return WorldFactory(database, tmp_path, template)
