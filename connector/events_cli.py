"""`seatsync events ...`: Stripe webhook events for ops — list, retry, replay from Stripe."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING

import click

from connector.config import Settings

if TYPE_CHECKING:
    from connector.adapters.database import SessionFactory
    from connector.adapters.stripe_port import StripePort
    from webhooks.handlers import HandlerContext


def _pipeline(settings: Settings) -> tuple[SessionFactory, StripePort, HandlerContext]:
    from connector.adapters.database import make_engine, make_session_factory
    from connector.adapters.stripe_port import StripeClientPort, make_stripe_client
    from connector.app import utc_now, wire_webhooks
    from sync.worker import Jobs

    sessions = make_session_factory(make_engine(settings.database_url))
    port = StripeClientPort(make_stripe_client(settings.stripe))
    jobs = Jobs.build(sessions, port, utc_now, settings.sync)
    return sessions, port, wire_webhooks(jobs)


def _sessions(settings: Settings) -> SessionFactory:
    from connector.adapters.database import make_engine, make_session_factory

    return make_session_factory(make_engine(settings.database_url))


def _moment(value: str) -> datetime:
    try:
        moment = datetime.fromisoformat(value)
    except ValueError as error:
        raise click.BadParameter(f"not an ISO 8601 time: {value!r}") from error
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


@click.group()
def events() -> None:
    """Stripe webhook events: what failed, retrying, catching up from Stripe."""


@events.command("list")
@click.option(
    "--status",
    type=click.Choice(["received", "processing", "handled", "failed", "ignored"]),
    default=None,
    help="only events in this state (default: all)",
)
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 10_000))
@click.pass_context
def list_events(ctx: click.Context, status: str | None, limit: int) -> None:
    """Stored events, newest first, with their handler's last error."""
    from connector.domain.stripe_events import EventStatus
    from webhooks.processing import stored_events

    with _sessions(ctx.obj)() as session:
        found = stored_events(session, EventStatus(status) if status else None, limit)
        for event in found:
            retry = event.next_attempt_at.isoformat() if event.next_attempt_at else "-"
            click.echo(
                f"{event.id}  {event.type}  {event.status}  attempts={event.attempts}  "
                f"next={retry}  created={event.created.isoformat()}"
            )
            if event.last_error:
                click.echo(f"    {event.last_error}")
    if not found:
        click.echo("no events")


@events.command("retry")
@click.argument("event_id")
@click.pass_context
def retry(ctx: click.Context, event_id: str) -> None:
    """Queue a failed event (even one given up) to be handled again now."""
    from connector.errors import ServiceError
    from webhooks.processing import retry_event

    try:
        with _sessions(ctx.obj).begin() as session:
            event = retry_event(session, event_id, datetime.now(UTC))
            status = event.status
    except ServiceError as error:
        raise click.ClickException(error.message) from error
    click.echo(f"{event_id}: {status}; the worker handles it within seconds")


@events.command("replay")
@click.option("--since", required=True, help="ISO 8601 time, e.g. 2026-11-20T00:00:00Z")
@click.option(
    "--process/--no-process",
    default=True,
    show_default=True,
    help="also run the handlers of the stored events now",
)
@click.pass_context
def replay(ctx: click.Context, since: str, process: bool) -> None:
    """Catch up from Stripe's event list (30 days kept): events not stored yet are stored
    and handled as if delivered; those already stored are left alone."""
    from webhooks.processing import ProcessReport, process_due_events
    from webhooks.replay import replay_events

    start = _moment(since)
    sessions, port, context = _pipeline(ctx.obj)
    report = replay_events(sessions, port, start, datetime.now(UTC))
    click.echo(
        f"listed {report.listed}: stored {report.stored}, already stored "
        f"{report.duplicates}, not storable {report.invalid}"
    )
    if not process:
        return
    total = ProcessReport()
    while True:
        batch = process_due_events(sessions, context, datetime.now(UTC))
        for field in ("handled", "failed", "given_up", "ignored"):
            setattr(total, field, getattr(total, field) + getattr(batch, field))
        if batch == ProcessReport():
            break
    click.echo(
        f"handled {total.handled}, failed {total.failed} (retried later), "
        f"given up {total.given_up}, ignored {total.ignored}"
    )
