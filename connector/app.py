"""`create_app(settings)`: the Flask application, wired at the edge. Nothing connects at
import time; tests pass their own Stripe port, clock and engine."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from flask_openapi3.models.info import Info
from flask_openapi3.openapi import OpenAPI
from sqlalchemy import Engine

from connector.adapters.database import (
    engine_of,
    make_engine,
    make_read_session_factory,
    make_session_factory,
)
from connector.adapters.key_revocations import RevocationListener
from connector.adapters.metrics import API_KEY_CACHE_LISTENING
from connector.adapters.notify import SmtpAndHttpChannels
from connector.adapters.stripe_port import StripeClientPort, StripePort, make_stripe_client
from connector.api import billing_ops, contracts, ops, payments, seats, service
from connector.api.context import Wiring, install_request_hooks, wiring_of
from connector.api.errors import install_error_handlers, validation_error_response
from connector.api.instrumentation import install_instrumentation
from connector.api.schemas import ErrorBody
from connector.config import Settings
from connector.dashboard import install_dashboard
from connector.services.notices import deliver_due
from sync.worker import Jobs, start_background
from webhooks import ops_api
from webhooks.handlers import HandlerContext
from webhooks.processing import process_due_events, retry_event
from webhooks.receiver import ReceiverWiring, install_receiver

MAX_REQUEST_BYTES = 1024 * 1024
# Requests one web worker serves at once (gunicorn's threads); each may hold a connection.
REQUEST_THREADS = 8


def utc_now() -> datetime:
    return datetime.now(UTC)


def wire_webhooks(jobs: Jobs) -> HandlerContext:
    """Webhooks and the sync meet here, never importing each other: handlers ask the sync to
    look at a subscription (`request_sync`), and the scheduler runs the stored events."""
    context = HandlerContext(jobs.sessions, jobs.port, jobs.clock, request_sync=jobs.sync_now)
    jobs.process_webhooks = lambda: process_due_events(jobs.sessions, context, jobs.clock())
    return context


def wire_notices(jobs: Jobs, settings: Settings) -> None:
    """Over-allocation notices go out through the configured SMTP server and callbacks."""
    channels = SmtpAndHttpChannels(
        settings.smtp, jobs.clock, settings.notices.callback_timeout_seconds
    )
    jobs.deliver_notices = lambda: deliver_due(jobs.sessions, channels, jobs.clock)


def create_app(
    settings: Settings,
    *,
    engine: Engine | None = None,
    stripe_port: StripePort | None = None,
    clock: Callable[[], datetime] = utc_now,
    validate_responses: bool = False,
    run_jobs: bool | None = None,
) -> OpenAPI:
    """The app. `run_jobs` (default: the `sync.run_in_web` setting) starts the sync jobs in
    a background scheduler of this process."""
    app = OpenAPI(
        __name__,
        info=Info(title="seatsync", version="0.1.0", description="Per-seat billing on Stripe"),
        security_schemes={"bearer": {"type": "http", "scheme": "bearer"}},
        doc_prefix="/v1",
        doc_url="/openapi.json",
        validation_error_status=422,
        validation_error_callback=validation_error_response,
        validation_error_model=ErrorBody,
        validate_response=validate_responses,
    )
    app.json.sort_keys = False  # type: ignore[attr-defined]
    # No API body comes near this; a larger one is refused (413) before it is read.
    app.config["MAX_CONTENT_LENGTH"] = MAX_REQUEST_BYTES
    run_jobs = settings.sync.run_in_web if run_jobs is None else run_jobs
    threads = REQUEST_THREADS + (settings.sync.concurrency if run_jobs else 0)
    engine = engine or make_engine(settings.database_url, threads=threads)
    port = stripe_port or StripeClientPort(make_stripe_client(settings.stripe))
    sessions = make_session_factory(engine)
    jobs = Jobs.build(sessions, port, clock, settings.sync)
    app.extensions["seatsync_webhook_context"] = wire_webhooks(jobs)
    wire_notices(jobs, settings)
    app.extensions["seatsync"] = Wiring(
        settings=settings,
        sessions=sessions,
        stripe=port,
        clock=clock,
        resync=jobs.resync,
        key_prefix=jobs.outbox_drain.ctx.key_prefix,
        reads=make_read_session_factory(engine),
    )
    if run_jobs:
        app.extensions["seatsync_scheduler"] = start_background(jobs)
    install_receiver(
        app,
        ReceiverWiring(
            secrets=settings.stripe.signing_secrets(),
            tolerance_seconds=settings.stripe.webhook_tolerance_seconds,
            sessions=sessions,
            clock=clock,
        ),
    )
    install_instrumentation(app)  # first: its clock starts before the other hooks run
    install_request_hooks(app)
    install_error_handlers(app)
    app.register_api(seats.bp)
    app.register_api(ops.bp)
    app.register_api(contracts.bp)
    app.register_api(billing_ops.bp)
    app.register_api(ops_api.bp)
    app.register_api(payments.bp)
    app.register_api(service.bp)
    # The ops dashboard (/ops/); its Replay button is the webhooks' own retry, given here.
    install_dashboard(app, settings, replay_event=retry_event)
    return app


def watch_key_revocations(app: OpenAPI) -> RevocationListener | None:
    """On PostgreSQL, a listener that lets this process keep the API keys it verified and
    forget them the moment one is revoked anywhere (`seatsync apikey revoke`). Started by
    each gunicorn worker after its fork; without it (SQLite, tests, the listener's
    connection down) keys are read per request."""
    wired = wiring_of(app)
    keys, engine = wired.keys, engine_of(wired.sessions)
    if engine.dialect.name != "postgresql":
        return None

    def listening() -> None:
        keys.trust()
        API_KEY_CACHE_LISTENING.set(1)

    def lost() -> None:
        keys.distrust()
        API_KEY_CACHE_LISTENING.set(0)

    listener = RevocationListener(
        engine, on_listening=listening, on_revoked=lambda _key_id: keys.clear(), on_lost=lost
    )
    app.extensions["seatsync_key_revocations"] = listener
    return listener.start()
