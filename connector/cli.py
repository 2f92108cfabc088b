"""The `seatsync` command."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import click

from connector.config import Settings, load_settings
from connector.events_cli import events
from connector.observability import configure_logging
from connector.selfcheck.command import selfcheck

if TYPE_CHECKING:
    from sync.worker import Jobs


def _settings(ctx: click.Context) -> Settings:
    found: Settings = ctx.obj
    return found


@click.group()
@click.option(
    "--config",
    "config_file",
    type=click.Path(dir_okay=False),
    default=None,
    help="TOML file (default: $SEATSYNC_CONFIG, else ./seatsync.toml if present)",
)
@click.option(
    "--database",
    "database_url",
    default=None,
    help="database URL (default: the setting database_url, sqlite:///var/seatsync.db; the "
    "demo's is sqlite:///var/demo.db)",
)
@click.pass_context
def main(ctx: click.Context, config_file: str | None, database_url: str | None) -> None:
    """seatsync: per-seat billing between your product and Stripe."""
    overrides = {"database_url": database_url} if database_url else {}
    settings = load_settings(config_file, **overrides)
    # text or JSON lines (`log_format`), with the request / event / subscription ids; the
    # chatty libraries (a line per HTTP call / migration step / job run) only warn
    configure_logging(settings.log_level, settings.log_format)
    ctx.obj = settings


@main.group()
def db() -> None:
    """The connector's database."""


@db.command("upgrade")
@click.pass_context
def db_upgrade(ctx: click.Context) -> None:
    """Create or migrate the database to the newest schema."""
    from sqlalchemy.engine import make_url

    from connector.adapters.database import make_engine
    from connector.adapters.migrate import upgrade

    settings = _settings(ctx)
    upgrade(make_engine(settings.database_url))
    shown = make_url(settings.database_url).render_as_string(hide_password=True)
    click.echo(f"database at the newest schema: {shown}")


@main.group()
def apikey() -> None:
    """API keys for product backends and billing ops."""


@apikey.command("create")
@click.option("--name", required=True, help="who will use it, e.g. 'product-backend'")
@click.option(
    "--scopes",
    required=True,
    help="comma-separated: seats:write, seats:read, billing:read, ops:write",
)
@click.pass_context
def apikey_create(ctx: click.Context, name: str, scopes: str) -> None:
    """Create a key and print it once (only its hash is stored)."""
    from connector.adapters.database import make_engine, make_session_factory
    from connector.services.apikeys import Scope, create_key

    try:
        parsed = [Scope(part.strip()) for part in scopes.split(",") if part.strip()]
    except ValueError as error:
        raise click.BadParameter(
            f"{error}; choose from {', '.join(s.value for s in Scope)}", param_hint="--scopes"
        ) from error
    if not parsed:
        raise click.BadParameter("give at least one scope", param_hint="--scopes")
    sessions = make_session_factory(make_engine(_settings(ctx).database_url))
    with sessions.begin() as session:
        created = create_key(session, name, parsed, datetime.now(UTC))
    click.echo(f"id:     {created.id}")
    click.echo(f"scopes: {','.join(created.scopes)}")
    click.echo(f"key:    {created.secret}")
    click.echo("Store the key now: it is not shown again.", err=True)


@apikey.command("revoke")
@click.argument("key_id")
@click.pass_context
def apikey_revoke(ctx: click.Context, key_id: str) -> None:
    """Revoke a key by its id."""
    from connector.adapters.database import make_engine, make_session_factory
    from connector.services.apikeys import revoke_key

    sessions = make_session_factory(make_engine(_settings(ctx).database_url))
    with sessions.begin() as session:
        if not revoke_key(session, key_id, datetime.now(UTC)):
            raise click.ClickException(f"no key {key_id}")
    click.echo(f"revoked {key_id}")


@main.command()
@click.option("--workers", default=2, show_default=True, help="gunicorn worker processes")
@click.option("--host", default=None, help="default: the setting server.host (127.0.0.1)")
@click.option("--port", type=int, default=None, help="default: the setting server.port (8000)")
@click.pass_context
def serve(ctx: click.Context, workers: int, host: str | None, port: int | None) -> None:
    """Serve the HTTP API with gunicorn."""
    from connector.server import run_gunicorn

    settings = _settings(ctx)
    server = settings.server.model_copy(
        update={k: v for k, v in (("host", host), ("port", port)) if v is not None}
    )
    run_gunicorn(settings.model_copy(update={"server": server}), workers=workers)


def _jobs(settings: Settings) -> Jobs:
    from connector.adapters.database import make_engine, make_session_factory
    from connector.adapters.stripe_port import StripeClientPort, make_stripe_client
    from connector.app import utc_now, wire_notices, wire_webhooks
    from sync.worker import Jobs

    engine = make_engine(settings.database_url, threads=settings.sync.concurrency)
    sessions = make_session_factory(engine)
    port = StripeClientPort(make_stripe_client(settings.stripe))
    jobs = Jobs.build(sessions, port, utc_now, settings.sync)
    wire_webhooks(jobs)  # the worker also runs the handlers of stored Stripe events
    wire_notices(jobs, settings)  # and delivers over-allocation notices
    return jobs


@main.command()
@click.pass_context
def worker(ctx: click.Context) -> None:
    """Run the sync jobs: outbox drain, renewals, reconcile. Start as many as you like
    against one PostgreSQL database."""
    from connector.server import freeze_start_up_heap
    from sync.worker import run_foreground

    jobs = _jobs(_settings(ctx))
    freeze_start_up_heap()
    run_foreground(jobs)


@main.command()
@click.option("--json", "as_json", is_flag=True, help="print the status as JSON")
@click.pass_context
def status(ctx: click.Context, as_json: bool) -> None:
    """How the sync with Stripe stands: pending, retrying, dead-lettered, drift."""
    from sqlalchemy.engine import make_url

    from connector.adapters.database import make_engine, make_session_factory
    from connector.adapters.migrate import is_current
    from connector.api.sync_status import sync_status

    url = _settings(ctx).database_url
    shown = make_url(url).render_as_string(hide_password=True)
    database_file = make_url(url).database if make_url(url).get_backend_name() == "sqlite" else None
    if database_file and not Path(database_file).exists():  # never create an empty one
        raise click.ClickException(
            f"no database at {shown}. Choose one with --database or SEATSYNC_DATABASE_URL "
            "(the demo's: --database sqlite:///var/demo.db)"
        )
    engine = make_engine(url)
    if not is_current(engine):
        raise click.ClickException(
            f"the database at {shown} is not migrated: run `seatsync db upgrade`, or choose "
            "another with --database"
        )
    sessions = make_session_factory(engine)
    with sessions() as session:
        report = sync_status(session, datetime.now(UTC))
    if not as_json:
        click.echo(f"database:          {shown}")
    if as_json:
        click.echo(report.model_dump_json(indent=2))
        return
    age = report.oldest_pending_age_seconds
    click.echo(f"pending changes:   {report.pending}" + (f" (oldest {age}s)" if age else ""))
    click.echo(f"in flight:         {report.in_flight}")
    click.echo(f"retrying:          {report.retrying}")
    click.echo(f"dead-lettered:     {len(report.dead)}")
    for record in report.dead:
        click.echo(f"  #{record.id} {record.subscription_id}: {record.last_error}")
    click.echo(f"deferred invoices: {report.invoices_deferred}")
    click.echo(f"renewals to check: {report.renewals_unchecked}")
    last = report.last_reconcile
    click.echo(f"last reconcile:    {last.at.isoformat() if last else 'never'}")
    click.echo(f"open drift:        {len(report.drift)}")
    for drift in report.drift:
        where = f"{drift.subscription_id}/{drift.seat_type or '-'}"
        click.echo(f"  {where} {drift.field}: expected {drift.expected}, Stripe {drift.actual}")


@main.group()
def export() -> None:
    """Exports for billing ops."""


@export.command("billed-holders")
@click.option("--month", required=True, help="the month, YYYY-MM (UTC)")
@click.option("--subscription", default=None, help="only this subscription (ours or Stripe's id)")
@click.option(
    "--output",
    type=click.Path(dir_okay=False, writable=True),
    default=None,
    help="write the CSV here (default: standard output)",
)
@click.pass_context
def export_billed_holders(
    ctx: click.Context, month: str, subscription: str | None, output: str | None
) -> None:
    """The billed licence holders of a month, as CSV, from the ledger."""
    from connector.adapters.database import make_engine, make_session_factory
    from connector.errors import ServiceError
    from connector.services.exports import billed_holders, csv_lines

    sessions = make_session_factory(make_engine(_settings(ctx).database_url))
    try:
        rows = billed_holders(sessions, month, subscription)
    except ServiceError as error:
        hint = "--month" if error.code == "invalid_month" else "--subscription"
        raise click.BadParameter(error.message, param_hint=hint) from error
    if output is None:
        for line in csv_lines(rows):
            click.echo(line, nl=False)
        return
    with open(output, "w", encoding="utf-8", newline="") as target:  # the CSV's own CRLF
        for line in csv_lines(rows):
            target.write(line)
    click.echo(f"written to {output}", err=True)


main.add_command(events)
main.add_command(selfcheck)
