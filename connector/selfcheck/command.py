"""The `seatsync selfcheck` command."""

from __future__ import annotations

import calendar
import logging

import click
from pydantic import SecretStr

from connector.config import Settings, StripeSettings

LIVE_KEY_PREFIXES = ("sk_live_", "rk_live_")
TEST_KEY_PREFIXES = ("sk_test_", "rk_test_")
EXIT_MISMATCH = 1  # a check did not match, or the run could not finish or clean up
EXIT_REFUSED = 2  # not a test-mode key (also click's exit status for bad usage)


def key_refusal(api_key: str) -> str | None:
    """Why `api_key` may not be used (None: a test-mode key). The self-check creates and
    deletes objects and moves test clocks: never on a live account."""
    if api_key.startswith(LIVE_KEY_PREFIXES):
        return (
            "refusing a live-mode key: the self-check creates and deletes customers, "
            "subscriptions and test clocks, so it runs only with a test-mode key "
            "(sk_test_... or rk_test_...)"
        )
    if not api_key.startswith(TEST_KEY_PREFIXES):
        return "give a Stripe test-mode secret or restricted key (sk_test_... or rk_test_...)"
    return None


def selfcheck_settings(settings: Settings, api_key: str, api_base: str) -> Settings:
    """The in-process connector's settings: the given key and address (never the configured
    ones: those may be live), no background jobs, Stripe's test-mode request rate."""
    sync = settings.sync.model_copy(
        update={
            "run_in_web": False,
            "max_requests_per_second": min(settings.sync.max_requests_per_second, 20.0),
        }
    )
    stripe = StripeSettings(api_key=SecretStr(api_key), api_base=api_base, max_network_retries=2)
    return settings.model_copy(update={"database_url": "sqlite://", "stripe": stripe, "sync": sync})


@click.command()
@click.option(
    "--api-key",
    envvar="SEATSYNC_SELFCHECK_API_KEY",
    required=True,
    help="a Stripe TEST-mode key, sk_test_... (or $SEATSYNC_SELFCHECK_API_KEY); live keys "
    "are refused",
)
@click.option(
    "--api-base",
    default="https://api.stripe.com",
    show_default=True,
    help="Stripe's address; the sandbox's to run offline, e.g. http://127.0.0.1:12111",
)
@click.option(
    "--year",
    type=int,
    default=None,
    help="the year the cases' dates fall in (default: the first one without 29 February "
    "whose 1 January is not past in Stripe's clock; the rules' examples use 2026)",
)
@click.option(
    "--only",
    "only",
    multiple=True,
    help="run only this case (repeatable): ex1, ex2, ex3, ex4, decrease-increase, "
    "re-add-to-peak, 30-day-boundary",
)
@click.option(
    "--poll-seconds",
    type=float,
    default=2.0,
    show_default=True,
    help="how often to ask whether an advancing test clock is ready",
)
@click.option(
    "--advance-timeout",
    type=float,
    default=600.0,
    show_default=True,
    help="seconds to wait for one advance of the test clocks",
)
@click.pass_context
def selfcheck(
    ctx: click.Context,
    api_key: str,
    api_base: str,
    year: int | None,
    only: tuple[str, ...],
    poll_seconds: float,
    advance_timeout: float,
) -> None:
    """Check, against Stripe with your TEST key, that Stripe invoices what the connector
    predicts: BILLING_RULES' worked examples and rare paths in both billing modes, on test
    clocks. Prints a table; exits 1 on any mismatch. Deletes everything it created."""
    refusal = key_refusal(api_key.strip())
    if refusal is not None:
        click.echo(f"seatsync selfcheck: {refusal}", err=True)
        ctx.exit(EXIT_REFUSED)
    if year is not None and calendar.isleap(year):
        raise click.BadParameter(
            "choose a year without 29 February (the examples' periods have 365 days)",
            param_hint="--year",
        )
    from connector.adapters.stripe_port import make_stripe_client
    from connector.selfcheck.cases import CASES
    from connector.selfcheck.runner import run_selfcheck

    unknown = set(only) - {case.key for case in CASES}
    if unknown:
        raise click.BadParameter(
            f"no case {', '.join(sorted(unknown))}; the cases: "
            + ", ".join(case.key for case in CASES),
            param_hint="--only",
        )
    cases = tuple(case for case in CASES if not only or case.key in only)

    for name in ("connector", "sync", "webhooks", "stripe"):  # the table is the output
        logging.getLogger(name).setLevel(logging.WARNING)
    settings = selfcheck_settings(ctx.obj, api_key.strip(), api_base)
    report = run_selfcheck(
        make_stripe_client(settings.stripe),
        settings,
        echo=lambda text: click.echo(f"... {text}"),
        year=year,
        poll_seconds=poll_seconds,
        advance_timeout_seconds=advance_timeout,
        cases=cases,
    )
    click.echo("")
    if report.year is not None:
        click.echo(f"cases dated in {report.year}; amounts in minor units (cents)")
    click.echo(report.render())
    if report.ok:
        click.echo("selfcheck passed: Stripe invoiced what the connector predicted")
        return
    click.echo("selfcheck FAILED", err=True)
    ctx.exit(EXIT_MISMATCH)
