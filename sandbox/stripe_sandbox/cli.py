"""The sandbox's commands: ``stripe-sandbox`` (the bare fake Stripe) and ``seatsync-demo``.

Part of ``stripe_sandbox``, a TEST AND DEMO TOOL: a fake Stripe, never real money.
"""

from __future__ import annotations

import importlib.util
import logging

import click

_LOG_LEVELS = click.Choice(["debug", "info", "warning", "error"], case_sensitive=False)


def _configure_logging(level: str) -> None:
    logging.basicConfig(
        level=level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    # one line per HTTP call / migration step / job run: only warnings and worse
    for chatty in ("stripe", "alembic", "apscheduler"):
        logging.getLogger(chatty).setLevel(
            max(logging.WARNING, logging.getLevelName(level.upper()))
        )


@click.command("stripe-sandbox")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=12111, show_default=True)
@click.option("--webhook-url", default=None, help="where to POST signed events")
@click.option(
    "--latency-ms",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="answer every API request (not /_sandbox) after this many ms; requests overlap",
)
@click.option("--log-level", type=_LOG_LEVELS, default="info", show_default=True)
def serve_sandbox(
    host: str, port: int, webhook_url: str | None, latency_ms: int, log_level: str
) -> None:
    """Serve the Stripe double on loopback: a TEST AND DEMO TOOL, never real money."""
    from stripe_sandbox.server import serve

    _configure_logging(log_level)
    serve(host=host, port=port, webhook_url=webhook_url, latency_ms=latency_ms)


@click.command("seatsync-demo")
@click.option("--port", default=8000, show_default=True, help="the connector's port")
@click.option("--sandbox-port", default=12111, show_default=True, help="the Stripe sandbox's")
@click.option("--database", default="sqlite:///var/demo.db", show_default=True)
@click.option("--log-level", type=_LOG_LEVELS, default="info", show_default=True)
def demo(port: int, sandbox_port: int, database: str, log_level: str) -> None:
    """Run everything on this machine: the Stripe sandbox, a migrated SQLite database, a demo
    contract and the connector, and print the URLs and an API key to try."""
    if importlib.util.find_spec("connector") is None:
        raise click.ClickException(
            "seatsync-demo needs the seatsync connector installed too: run scripts/bootstrap, "
            "or `pip install -e .` at the repository root"
        )
    from stripe_sandbox.demo import run_demo

    _configure_logging(log_level)
    run_demo(port=port, sandbox_port=sandbox_port, database_url=database)
