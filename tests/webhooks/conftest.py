"""Webhook fixtures: the app trusts the Stripe double's signing secret; `process` runs the
handlers of stored events the way the scheduled job does, deterministically (no jitter)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import Engine

from connector.adapters.database import SessionFactory, make_session_factory
from connector.config import Settings, StripeSettings
from tests.conftest import STRIPE_API_BASE
from tests.helpers import Database
from tests.webhooks.support import SECRET
from webhooks.handlers import HandlerContext
from webhooks.processing import ProcessReport, process_due_events


@pytest.fixture
def settings(database: Database) -> Settings:
    return Settings(
        database_url=database.url,
        stripe=StripeSettings(
            api_key="sk_test_seatsync", api_base=STRIPE_API_BASE, webhook_secrets=[SECRET]
        ),
    )


@pytest.fixture
def sessions(engine: Engine) -> SessionFactory:
    return make_session_factory(engine)


@pytest.fixture
def webhook_context(app: Any) -> HandlerContext:
    """What the app wired: handlers reach the double, and `request_sync` the app's sync."""
    context: HandlerContext = app.extensions["seatsync_webhook_context"]
    return context


@pytest.fixture
def process(sessions: SessionFactory, webhook_context: HandlerContext) -> Callable[..., Any]:
    def run(context: HandlerContext | None = None) -> ProcessReport:
        ctx = context or webhook_context
        return process_due_events(sessions, ctx, ctx.clock(), limit=1000, jitter=lambda: 0.0)

    return run
