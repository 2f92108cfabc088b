"""The scheduler really runs the jobs; `seatsync status` reports what they did."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest
from click.testing import CliRunner
from flask.testing import FlaskClient

from connector.cli import main
from stripe_sandbox.double import StripeDouble
from sync.worker import Jobs, start_background
from tests.e2e.scenario import Scenario
from tests.e2e.test_sync import MARCH_15
from tests.helpers import Database


def test_background_scheduler_drains_the_outbox(
    scenario: Callable[..., Scenario],
    double: StripeDouble,
    make_sync: Callable[..., Any],
    client: FlaskClient,
    auth: dict[str, str],
) -> None:
    s = scenario()
    double.advance_to(MARCH_15)
    s.post("licenses", 1)
    engine = make_sync(drain_interval_seconds=0.05)
    scheduler = start_background(
        Jobs(engine.sessions, engine.port, engine.clock, engine.settings, engine)
    )
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if (client.get("/v1/ops/sync", headers=auth).json or {})["pending"] == 0:
                break
            time.sleep(0.05)
    finally:
        scheduler.shutdown(wait=True)
    assert (client.get("/v1/ops/sync", headers=auth).json or {})["pending"] == 0
    assert len(s.new_invoices()) == 1


def test_status_command_shows_pending_and_dead_changes(
    scenario: Callable[..., Scenario],
    double: StripeDouble,
    database: Database,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    s = scenario()
    double.advance_to(MARCH_15)
    s.post("licenses", 1)
    monkeypatch.setenv("SEATSYNC_DATABASE_URL", database.url)
    pending = CliRunner().invoke(main, ["status"])
    assert pending.exit_code == 0, pending.output
    assert "pending changes:   1" in pending.output
    double.inject_fault("POST", rf"/v1/subscriptions/{s.stripe_sub.id}", status=400)
    s.sync.drain()
    dead = CliRunner().invoke(main, ["status", "--json"])
    assert dead.exit_code == 0, dead.output
    assert '"pending": 0' in dead.output
    assert "Stripe 400" in dead.output
