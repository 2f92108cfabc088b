"""The `seatsync` command."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

import click

from connector.config import Settings, load_settings


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
@click.pass_context
def main(ctx: click.Context, config_file: str | None) -> None:
    """seatsync: per-seat billing between your product and Stripe."""
    settings = load_settings(config_file)
    logging.basicConfig(
        level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    for chatty in ("stripe", "alembic"):  # one line per HTTP call / migration step
        logging.getLogger(chatty).setLevel(
            max(logging.WARNING, logging.getLevelName(settings.log_level))
        )
    ctx.obj = settings


@main.group()
def db() -> None:
    """The connector's database."""


@db.command("upgrade")
@click.pass_context
def db_upgrade(ctx: click.Context) -> None:
    """Create or migrate the database to the newest schema."""
    from connector.adapters.database import make_engine
    from connector.adapters.migrate import upgrade

    settings = _settings(ctx)
    upgrade(make_engine(settings.database_url))
    click.echo(f"database at the newest schema: {settings.database_url}")


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
@click.pass_context
def serve(ctx: click.Context, workers: int) -> None:
    """Serve the HTTP API with gunicorn."""
    from connector.server import run_gunicorn

    run_gunicorn(_settings(ctx), workers=workers)


@main.command("stripe-sandbox")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=12111, show_default=True)
@click.option("--webhook-url", default=None, help="where to POST signed events")
def stripe_sandbox(host: str, port: int, webhook_url: str | None) -> None:
    """Serve the Stripe double on loopback: a TEST AND DEMO TOOL, never real money."""
    from stripe_sandbox.server import serve as serve_sandbox

    serve_sandbox(host=host, port=port, webhook_url=webhook_url)


@main.command()
@click.option("--port", default=8000, show_default=True, help="the connector's port")
@click.option("--sandbox-port", default=12111, show_default=True, help="the Stripe sandbox's")
@click.option("--database", default="sqlite:///var/demo.db", show_default=True)
def demo(port: int, sandbox_port: int, database: str) -> None:
    """Run everything on this machine: the Stripe sandbox, a migrated SQLite database, a demo
    contract and the connector, and print the URLs and an API key to try."""
    from connector.demo import run_demo

    run_demo(port=port, sandbox_port=sandbox_port, database_url=database)
