"""Hypothesis profiles for the billing model, and a fresh world per example.

Profiles (pick with HYPOTHESIS_PROFILE; default "ci"):
- `ci`: 25 examples of at most 15 steps, derandomized (the same examples on every run, so
  CI is reproducible), no deadline: well under 90 s on SQLite and PostgreSQL together.
- `long`: the hunt — thousands of random examples of up to 50 steps, e.g.
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

settings.register_profile(
    "model-base",
    deadline=None,
    database=None,  # nothing written under the work tree
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
_BASE = settings.get_profile("model-base")
settings.register_profile("ci", _BASE, max_examples=25, stateful_step_count=15, derandomize=True)
settings.register_profile(
    "long", _BASE, max_examples=5000, stateful_step_count=50, derandomize=False
)


def model_settings() -> settings:
    """The profile named by HYPOTHESIS_PROFILE (default "ci"); MODEL_MAX_EXAMPLES overrides
    its number of examples (to run the hunt in batches)."""
    chosen = settings.get_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
    if os.environ.get("MODEL_MAX_EXAMPLES"):
        chosen = settings(chosen, max_examples=int(os.environ["MODEL_MAX_EXAMPLES"]))
    return chosen


@pytest.fixture
def worlds(request: pytest.FixtureRequest, database: Database, tmp_path: Path) -> WorldFactory:
    template: Path | None = None
    if database.backend == "sqlite":
        template = request.getfixturevalue("_sqlite_template")
    return WorldFactory(database, tmp_path, template)
