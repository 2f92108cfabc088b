"""`seatsync selfcheck` against the Stripe sandbox (the double, reached through `responses`):
every case matches and it exits 0; a wrong prediction or a wrong charge makes it exit 1;
live keys are refused; what it created is gone afterwards, also when it fails."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
import responses
from click.testing import CliRunner, Result

from connector.cli import main
from connector.domain.sync_plan import QuantityUpdate
from stripe_sandbox.double import StripeDouble
from stripe_sandbox.responses_adapter import install
from tests.e2e.scenario import at
from tests.helpers import utc

API_BASE = "https://api.stripe.test"


@pytest.fixture
def sandbox() -> Iterator[StripeDouble]:
    """Stripe, before the worked examples' year: the self-check dates its cases in 2026."""
    double = StripeDouble(now=at(utc(2025, 12, 1)))
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        install(rsps, double, API_BASE)
        yield double


def selfcheck(*args: str, key: str = "sk_test_selfcheck") -> Result:
    return CliRunner().invoke(
        main,
        ["selfcheck", "--api-key", key, "--api-base", API_BASE, "--poll-seconds", "0", *args],
    )


def table(output: str) -> dict[tuple[str, str, str], list[str]]:
    """The printed rows by (case, mode, check): [rules, quote, ledger, Stripe, verdict]."""
    rows = {}
    for line in output.splitlines():
        cells = re.split(r"\s{2,}", line.strip())
        if len(cells) == 8 and cells[1] in ("classic", "flexible"):
            rows[(cells[0], cells[1], cells[2])] = cells[3:]
    return rows


def assert_nothing_left(double: StripeDouble) -> None:
    books = double.state.books
    assert not books.test_clocks and not books.customers and not books.subscriptions
    assert not books.invoices and not books.invoice_items
    assert not any(p.active for p in books.prices.values())
    assert not any(p.active for p in books.products.values())


def test_stripe_invoices_what_the_connector_predicts_in_every_case(
    sandbox: StripeDouble,
) -> None:
    result = selfcheck()

    assert result.exit_code == 0, result.output
    assert "MISMATCH" not in result.output
    rows = table(result.output)
    assert len(rows) == 48
    assert all(row[-1].startswith("match") for row in rows.values())
    assert "48 of 48 checks match" in result.output
    for mode in ("classic", "flexible"):
        # BILLING_RULES 4's worked examples, as the rules, the connector and Stripe say them
        assert rows[("ex1", mode, "+2 at 2026-03-15 10:30")][:3] == ["19,200 now"] * 3
        assert rows[("ex1", mode, "+2 at 2026-03-15 10:30")][3].startswith("19,200 now")
        ex2 = rows[("ex2", mode, "+1 at 2026-11-20 09:00")]
        assert ex2[0] == "366.67 next invoice"  # the exact figure ...
        assert ex2[1:4] == [
            "366 next invoice",  # ... and what Stripe invoices, rounding each line
            "366 next invoice",
            "366 next invoice [+4,033x11 -3,667x10]",
        ]
        assert ex2[4].startswith("match (±1")
        assert rows[("ex2", mode, "renewal 2026-12-01")][3].startswith("11 seats, 11,366 paid")
        ex3 = rows[("ex3", mode, "+3 at 2026-03-15 10:30")]
        assert ex3[:3] == ["9,600 now"] * 3  # one seat, 292 of 365 days
        assert rows[("ex4", mode, "+1 at 2026-06-01 00:00")][:3] == ["0 nothing"] * 3
        assert rows[("ex4", mode, "renewal 2027-01-01")][3].startswith("11 seats, 132,000 paid")
        assert rows[("decrease-increase", mode, "+3 at 2026-03-15 10:30")][3].startswith(
            "9,600 now"
        )
        assert rows[("30-day-boundary", mode, "+1 at 2026-12-02 00:00")][2] == "987 next invoice"
    assert_nothing_left(sandbox)


def test_a_wrong_prediction_makes_it_fail(
    sandbox: StripeDouble, monkeypatch: pytest.MonkeyPatch
) -> None:
    from connector.services import seats

    real = seats.prorated_charge
    monkeypatch.setattr(seats, "prorated_charge", lambda *a: real(*a) + 100)

    result = selfcheck("--only", "ex1")

    assert result.exit_code == 1, result.output
    row = table(result.output)[("ex1", "classic", "+2 at 2026-03-15 10:30")]
    assert row[1:4] == ["19,300 now", "19,300 now", "19,200 now [-76,800x8 +96,000x10]"]
    assert row[4].startswith("MISMATCH: Stripe 19,200 vs connector 19,300")
    assert "selfcheck FAILED" in result.output
    assert_nothing_left(sandbox)


def test_a_sync_that_skips_classic_modes_restore_is_caught(
    sandbox: StripeDouble, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without restoring the paid quantity first, classic mode credits only the 10 Stripe
    holds after the pushed decrease and charges three seats instead of one."""
    import sync.drain

    real = sync.drain.plan_updates

    def without_restore(*args: Any) -> list[QuantityUpdate]:
        updates = real(*args)
        return [u for i, u in enumerate(updates) if u.charges or i == len(updates) - 1]

    monkeypatch.setattr(sync.drain, "plan_updates", without_restore)

    result = selfcheck("--only", "decrease-increase")

    assert result.exit_code == 1, result.output
    rows = table(result.output)
    classic = rows[("decrease-increase", "classic", "+3 at 2026-03-15 10:30")]
    assert classic[3].startswith("28,800 now [-96,000x10 +124,800x13]")
    assert classic[4].startswith("MISMATCH")
    flexible = rows[("decrease-increase", "flexible", "+3 at 2026-03-15 10:30")]
    assert flexible[4] == "match"  # flexible mode credits what was paid anyway
    assert_nothing_left(sandbox)


def test_a_run_that_stops_still_deletes_what_it_created(sandbox: StripeDouble) -> None:
    sandbox.inject_fault("POST", r"/v1/test_helpers/test_clocks/[^/]+/advance", status=400)

    result = selfcheck("--only", "ex1")

    assert result.exit_code == 1
    assert "problem: the run stopped" in result.output
    assert_nothing_left(sandbox)


@pytest.mark.parametrize("key", ["sk_live_abc", "rk_live_abc", "pk_test_abc"])
def test_only_test_mode_keys_are_used(sandbox: StripeDouble, key: str) -> None:
    result = selfcheck(key=key)

    assert result.exit_code == 2
    assert "test-mode" in result.output
    assert sandbox.requests == []  # Stripe was never called
