"""JSON log lines carry the ids of what they are about: the request's Request-Id, the Stripe
event being handled, the subscription being synced. On both databases."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import stripe
from flask.testing import FlaskClient
from sqlalchemy import Engine

from connector.adapters.database import make_session_factory
from connector.observability import log_context, make_handler
from stripe_sandbox.double import StripeDouble
from tests.e2e.scenario import Scenario
from tests.webhooks.support import event_body, post, sign
from webhooks.handlers import HandlerContext
from webhooks.processing import process_due_events
from webhooks.store import decode_event, store_event


class JsonLines:
    def __init__(self) -> None:
        self.stream = io.StringIO()

    def records(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.stream.getvalue().splitlines() if line]

    def about(self, text: str) -> list[dict[str, Any]]:
        return [r for r in self.records() if text in r["message"]]


@pytest.fixture
def json_lines() -> Iterator[JsonLines]:
    """What the root logger writes as JSON (the format `log_format = "json"` installs)."""
    lines = JsonLines()
    handler = make_handler("json", lines.stream)
    root = logging.getLogger()
    root.addHandler(handler)
    yield lines
    root.removeHandler(handler)


def test_every_line_logged_during_a_request_carries_its_request_id(
    client: FlaskClient, json_lines: JsonLines
) -> None:
    body = event_body()
    # no webhook secret is configured here: the receiver logs an error, then refuses (503)
    given = post(client, body, sign(body))
    response = client.post(
        "/webhooks/stripe",
        data=body,
        headers={"Stripe-Signature": sign(body), "Request-Id": "req_from_the_caller"},
    )
    assert (given.status_code, response.status_code) == (503, 503)
    logging.getLogger("tests").warning("after the requests")

    refused = json_lines.about("no webhook secret is configured")
    assert [r["request_id"] for r in refused] == [
        given.headers["Request-Id"],
        "req_from_the_caller",
    ]
    assert refused[0]["level"] == "ERROR" and refused[0]["logger"] == "webhooks.receiver"
    assert refused[0]["timestamp"].endswith("Z")
    (after,) = json_lines.about("after the requests")
    assert "request_id" not in after  # the request is over


def test_a_handlers_lines_carry_the_event_id(
    app: Any, engine: Engine, json_lines: JsonLines
) -> None:
    context: HandlerContext = app.extensions["seatsync_webhook_context"]
    sessions = make_session_factory(engine)
    broken = event_body("evt_logging_1", "invoice.paid", obj={"object": "invoice"})  # no id
    store_event(sessions, decode_event(broken), context.clock())
    report = process_due_events(sessions, context, context.clock(), jitter=lambda: 0.0)
    assert report.failed == 1
    (failed,) = json_lines.about("failed (attempt 1")
    assert failed["event_id"] == "evt_logging_1"
    assert "ValueError" in failed["exc_info"]


def test_a_syncs_lines_carry_the_subscription_id(
    client: FlaskClient,
    auth: dict[str, str],
    stripe_client: stripe.StripeClient,
    double: StripeDouble,
    make_sync: Callable[..., Any],
    json_lines: JsonLines,
) -> None:
    scenario = Scenario(client, auth, stripe_client, double, make_sync)
    scenario.post("licenses", 1)
    double.inject_fault("POST", rf"/v1/subscriptions/{scenario.stripe_sub.id}", status=400)
    scenario.sync.drain()  # Stripe refuses the update: dead-lettered, logged as an error
    (dead,) = json_lines.about("dead-lettered outbox records")
    assert dead["subscription_id"] == scenario.id
    assert "request_id" not in dead and "event_id" not in dead


def test_ids_bound_in_a_block_are_gone_after_it(json_lines: JsonLines) -> None:
    log = logging.getLogger("tests")
    with log_context(subscription_id="ssub_outer"):
        with log_context(event_id="evt_inner"):
            log.warning("inner")
        log.warning("outer")
    log.warning("none")
    inner, outer, none = json_lines.records()
    assert (inner["subscription_id"], inner["event_id"]) == ("ssub_outer", "evt_inner")
    assert outer["subscription_id"] == "ssub_outer" and "event_id" not in outer
    assert "subscription_id" not in none
