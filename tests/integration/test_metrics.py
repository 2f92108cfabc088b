"""`/metrics` after real work: a purchase through the API, a drain into the Stripe double,
signed webhook deliveries, a true-up; every seatsync family present, on both databases.

Counters are per process and the tests share one, so they are compared before and after;
the database's gauges are exact.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import stripe
from flask.testing import FlaskClient
from prometheus_client import CollectorRegistry, multiprocess
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import Engine

from connector.adapters.database import make_session_factory
from connector.adapters.metrics import forget_dead_process
from connector.adapters.stripe_port import StripeClientPort
from connector.config import Settings, StripeSettings
from connector.services import true_up
from stripe_sandbox.double import StripeDouble
from tests import stripe_setup
from tests.conftest import STRIPE_API_BASE
from tests.e2e.scenario import Scenario, at
from tests.helpers import Database, utc
from tests.webhooks.support import SECRET, deliveries, event_body, post, sign
from webhooks.handlers import HandlerContext
from webhooks.processing import process_due_events

LICENSES_ROUTE = "/v1/subscriptions/<id>/seats/<seat_type>/licenses"
FAMILIES = {
    "seatsync_outbox_pending_records": "gauge",
    "seatsync_outbox_oldest_pending_age_seconds": "gauge",
    "seatsync_outbox_dead_records": "gauge",
    "seatsync_drift_open_records": "gauge",
    "seatsync_sync_lag_seconds": "histogram",
    "seatsync_sync_subscription_failures": "counter",
    "seatsync_stripe_calls": "counter",
    "seatsync_webhook_events": "counter",
    "seatsync_true_up_runs": "counter",
    "seatsync_http_requests": "counter",
    "seatsync_http_request_duration_seconds": "histogram",
    "seatsync_api_key_cache_listening": "gauge",
}


@pytest.fixture
def settings(database: Database) -> Settings:
    """The app trusts the Stripe double's webhook signing secret."""
    return Settings(
        database_url=database.url,
        stripe=StripeSettings(
            api_key="sk_test_seatsync", api_base=STRIPE_API_BASE, webhook_secrets=[SECRET]
        ),
    )


class Scrape:
    def __init__(self, client: FlaskClient) -> None:
        response = client.get("/metrics")
        assert response.status_code == 200
        self.content_types = response.headers.getlist("Content-Type")
        self.families = {f.name: f for f in text_string_to_metric_families(response.text)}

    def value(self, sample: str, **labels: str) -> float:
        """The sum of the series of `sample` with these labels (0 when there is none yet)."""
        return sum(
            float(found.value)
            for family in self.families.values()
            for found in family.samples
            if found.name == sample and all(found.labels.get(k) == v for k, v in labels.items())
        )


def test_metrics_show_the_sync_stripe_webhooks_and_http_with_one_content_type(
    client: FlaskClient,
    auth: dict[str, str],
    stripe_client: stripe.StripeClient,
    double: StripeDouble,
    make_sync: Callable[..., Any],
    app: Any,
    engine: Engine,
) -> None:
    before = Scrape(client)
    scenario = Scenario(client, auth, stripe_client, double, make_sync)
    double.take_webhook_deliveries()  # the set-up's events: not this test's
    double.advance(3600)
    scenario.post("licenses", 2)  # 10 -> 12 seats: one outbox record for Stripe
    double.advance(90)  # Stripe accepts it a minute and a half later

    pending = Scrape(client)
    assert pending.content_types == ["text/plain; version=0.0.4; charset=utf-8"]
    assert pending.value("seatsync_outbox_pending_records") == 1
    assert pending.value("seatsync_outbox_oldest_pending_age_seconds") == 90
    assert pending.value("seatsync_outbox_dead_records") == 0
    assert pending.value("seatsync_drift_open_records") == 0
    route = {"method": "POST", "route": LICENSES_ROUTE, "status": "200"}
    assert pending.value("seatsync_http_requests_total", **route) == (
        before.value("seatsync_http_requests_total", **route) + 1
    )
    timed = {"method": "POST", "route": LICENSES_ROUTE}
    assert pending.value("seatsync_http_request_duration_seconds_count", **timed) == (
        before.value("seatsync_http_request_duration_seconds_count", **timed) + 1
    )

    scenario.drain()
    events = deliveries(double)  # the update's events, signed by the double
    assert events
    for body, signature in events:
        assert post(client, body, signature).status_code == 200
    body, signature = events[-1]  # delivered again
    assert post(client, body, signature).json == {"received": True, "duplicate": True}
    assert post(client, body, "t=1,v1=forged").status_code == 400
    broken = event_body("evt_metrics_broken", "invoice.paid", obj={"object": "invoice"})
    assert post(client, broken, sign(broken)).status_code == 200  # stored; its handler fails
    context: HandlerContext = app.extensions["seatsync_webhook_context"]
    sessions = make_session_factory(engine)
    report = process_due_events(sessions, context, context.clock(), jitter=lambda: 0.0)
    assert report.handled >= 1 and report.failed == 1

    after = Scrape(client)
    assert after.content_types == ["text/plain; version=0.0.4; charset=utf-8"]
    for name, kind in FAMILIES.items():
        assert name in after.families, f"{name} missing"
        assert after.families[name].type == kind, name
        assert after.families[name].samples, f"{name} has no sample"
    assert after.value("seatsync_outbox_pending_records") == 0
    assert after.value("seatsync_outbox_oldest_pending_age_seconds") == 0

    def grew(sample: str, **labels: str) -> float:
        return after.value(sample, **labels) - before.value(sample, **labels)

    assert grew("seatsync_sync_lag_seconds_count") == 1
    assert grew("seatsync_sync_lag_seconds_sum") == 90
    assert grew("seatsync_sync_lag_seconds_bucket", le="60.0") == 0
    assert grew("seatsync_sync_lag_seconds_bucket", le="120.0") == 1
    calls = "seatsync_stripe_calls_total"
    assert grew(calls, operation="update_quantity", outcome="ok") == 1
    assert grew(calls, operation="retrieve_subscription", outcome="ok") >= 1  # the drain's read
    updated = "customer.subscription.updated"
    assert grew("seatsync_webhook_events_total", type=updated, outcome="received") >= 1
    assert grew("seatsync_webhook_events_total", type=updated, outcome="handled") >= 1
    assert grew("seatsync_webhook_events_total", outcome="duplicate") == 1
    assert grew("seatsync_webhook_events_total", type="unknown", outcome="refused") == 1
    assert grew("seatsync_webhook_events_total", type="invoice.paid", outcome="failed") == 1
    assert after.value("seatsync_true_up_runs_total", outcome="invoiced") >= 0  # shown at 0
    assert grew("seatsync_sync_subscription_failures_total") == 0


def test_dead_letters_and_rejected_stripe_calls_are_shown(
    client: FlaskClient,
    auth: dict[str, str],
    stripe_client: stripe.StripeClient,
    double: StripeDouble,
    make_sync: Callable[..., Any],
) -> None:
    before = Scrape(client)
    scenario = Scenario(client, auth, stripe_client, double, make_sync)
    scenario.post("licenses", 1)
    double.inject_fault("POST", rf"/v1/subscriptions/{scenario.stripe_sub.id}$", status=400)
    scenario.sync.drain()
    after = Scrape(client)
    assert after.value("seatsync_outbox_dead_records") == 1
    assert after.value("seatsync_outbox_pending_records") == 0
    calls = "seatsync_stripe_calls_total"
    assert (
        after.value(calls, operation="update_quantity", outcome="rejected")
        - before.value(calls, operation="update_quantity", outcome="rejected")
        == 1
    )


def test_a_true_up_invoice_is_counted(
    client: FlaskClient,
    auth: dict[str, str],
    stripe_client: stripe.StripeClient,
    double: StripeDouble,
    engine: Engine,
    clock: Callable[[], datetime],
) -> None:
    price = stripe_setup.price(stripe_client, 36500)
    sub = stripe_setup.subscription(stripe_client, [(price, 2)])
    users = {"name": "users", "stripe_price_id": price, "policy": "true_up"}
    response = client.post(
        "/v1/subscriptions",
        json={
            "stripe_subscription_id": sub.id,
            "seat_types": [{**users, "true_up_at": "2026-04-01T00:00:00Z"}],
        },
        headers=auth,
    )
    assert response.status_code == 201, response.json
    subscription_id = (response.json or {})["id"]
    for holder in ("u1", "u2", "u3"):  # one over the two licences
        path = f"/v1/subscriptions/{subscription_id}/seats/users/holders/{holder}"
        assert client.put(path, json={}, headers=auth).status_code == 200
    before = Scrape(client).value("seatsync_true_up_runs_total", outcome="invoiced")
    double.advance_to(at(utc(2026, 4, 1, 0, 30)))
    report = true_up.run_due(make_session_factory(engine), StripeClientPort(stripe_client), clock)
    assert report.invoices.invoiced == 1
    after = Scrape(client).value("seatsync_true_up_runs_total", outcome="invoiced")
    assert after - before == 1


MULTIPROCESS_CHILD = """
import os, sys
from connector.adapters.metrics import API_KEY_CACHE_LISTENING
API_KEY_CACHE_LISTENING.set(int(sys.argv[1]))
print(os.getpid())
"""


def test_a_dead_workers_gauge_leaves_the_multiprocess_sum(tmp_path: Path) -> None:
    """gunicorn's `child_exit` hook forgets a dead worker: its listening gauge leaves the
    sum (prometheus-client keeps every process's file until told)."""
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}

    def worker(listening: str) -> int:
        run = subprocess.run(
            [sys.executable, "-c", MULTIPROCESS_CHILD, listening],
            env=env,
            check=True,
            capture_output=True,
            text=True,
        )
        return int(run.stdout)

    listening_pid, _, idle_pid = worker("1"), worker("1"), worker("0")  # idle: a master

    def listening() -> float | None:
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry, path=str(tmp_path))  # type: ignore[no-untyped-call]
        return registry.get_sample_value("seatsync_api_key_cache_listening")

    assert listening() == 2
    forget_dead_process(listening_pid, str(tmp_path))
    assert listening() == 1
    forget_dead_process(idle_pid, str(tmp_path))
    assert listening() == 1
