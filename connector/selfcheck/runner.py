"""Drives the cases on the timeline and judges each step: the rules, the connector's quote
and ledger, and what Stripe invoiced."""

from __future__ import annotations

import logging
import secrets
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from fractions import Fraction
from functools import partial
from pathlib import Path
from typing import Any

import stripe

from connector.adapters.stripe_port import StripeClientPort
from connector.config import Settings
from connector.selfcheck.cases import (
    CASES,
    MODES,
    START,
    Action,
    CaseSpec,
    PriceKind,
    RuleCharge,
    RulesModel,
    Step,
    Where,
    choose_year,
    timeline,
)
from connector.selfcheck.connector_side import InProcessConnector
from connector.selfcheck.report import Report, Row, Verdict, money
from connector.selfcheck.stripe_side import (
    Billed,
    Line,
    Seen,
    SelfCheckError,
    StripeWorld,
    ts,
    utc,
)

log = logging.getLogger(__name__)

_LEDGER_WHERE = {"always_invoice": Where.NOW, "create_prorations": Where.NEXT}
_QUOTE_WHERE = {"now": Where.NOW, "next_invoice": Where.NEXT, "nothing_to_charge": Where.NOTHING}


@dataclass
class CaseRun:
    """One case in one billing mode."""

    spec: CaseSpec
    mode: str
    customer: str = ""
    stripe_subscription: str = ""
    subscription: str = ""  # the connector's id
    rules: RulesModel | None = None
    broken: bool = False  # a step failed: its later checks would only repeat it
    deferred_predicted: int = 0  # ledger charges put on the coming invoice
    renewal_seen: Seen | None = None
    renewal_plan: dict[str, Any] = field(default_factory=dict)


def run_selfcheck(
    client: stripe.StripeClient,
    settings: Settings,
    *,
    echo: Callable[[str], None] = print,
    year: int | None = None,
    poll_seconds: float = 2.0,
    advance_timeout_seconds: float = 600.0,
    cases: tuple[CaseSpec, ...] = CASES,
) -> Report:
    """Run every case against the Stripe account behind `client` (a test-mode key) and
    delete what was created, whatever happens. `settings` configure the in-process
    connector (its database is a temporary SQLite file, whatever they say). `cases`: all
    of them unless told otherwise."""
    report = Report()
    world = StripeWorld(
        client,
        secrets.token_hex(4),
        echo=echo,
        poll_seconds=poll_seconds,
        advance_timeout_seconds=advance_timeout_seconds,
    )
    try:
        echo("creating a product and prices (yearly 120.00, monthly 10.00 per seat)")
        stripe_now = world.create_catalogue()
        report.year = year or choose_year(stripe_now)
        echo(
            f"creating test clocks ({', '.join(MODES)}) at "
            f"{START.at(report.year):%Y-%m-%d %H:%M} UTC"
        )
        world.create_clocks(MODES, START.at(report.year))
        with tempfile.TemporaryDirectory(prefix="seatsync-selfcheck-") as workdir:
            connector = InProcessConnector(
                settings, StripeClientPort(client), world.time, Path(workdir)
            )
            try:
                _Drive(world, connector, report.year, report, echo, cases).run()
            finally:
                connector.close()
    except Exception as error:  # the run stops; what was created is still deleted
        if not isinstance(error, SelfCheckError | stripe.StripeError):
            log.exception("selfcheck stopped")  # a bug: show where
        report.problems.append(f"the run stopped: {type(error).__name__}: {error}")
    finally:
        echo(
            "deleting the test clocks (with their customers and subscriptions), archiving "
            "the prices and the product"
        )
        report.problems += world.cleanup()
    order = {case.key: i for i, case in enumerate(CASES)}
    report.rows.sort(key=lambda row: (order.get(row.case, len(order)), MODES.index(row.mode)))
    return report


class _Drive:
    def __init__(
        self,
        world: StripeWorld,
        connector: InProcessConnector,
        year: int,
        report: Report,
        echo: Callable[[str], None],
        cases: tuple[CaseSpec, ...],
    ) -> None:
        self.world, self.connector, self.year = world, connector, year
        self.report, self.echo = report, echo
        self.cases = cases
        self.runs = [CaseRun(spec, mode) for spec in cases for mode in MODES]

    def run(self) -> None:
        for moment in timeline(self.cases):
            at = moment.at(self.year)
            for run in self.runs:
                if run.spec.renewal == moment and not run.broken:
                    self._before_renewal(run)
            if self.world.time() < at:
                self.echo(f"advancing the test clocks to {at:%Y-%m-%d %H:%M}")
                self.world.advance_to(at)
            for run in self.runs:
                if run.spec.starts == moment:
                    self._guarded(run, partial(self._setup, run))
                for step in run.spec.steps:
                    if step.at == moment:
                        self._guarded(run, partial(self._step, run, step))
                if run.spec.renewal == moment:
                    self._guarded(run, partial(self._renewal, run))

    def _guarded(self, run: CaseRun, check: Callable[[], None]) -> None:
        """A case that fails stops its own later checks, never the others'."""
        if run.broken:
            return
        try:
            check()
        except SelfCheckError as error:
            run.broken = True
            self._row(run, "error", "-", "-", "-", "-", Verdict.MISMATCH, str(error))

    def _row(
        self,
        run: CaseRun,
        check: str,
        rules: str,
        quote: str,
        ledger: str,
        stripe_: str,
        verdict: Verdict,
        why: str = "",
    ) -> None:
        self.report.rows.append(
            Row(run.spec.key, run.mode, check, rules, quote, ledger, stripe_, verdict, why)
        )

    # --- setting a case up ---------------------------------------------------------------

    def _setup(self, run: CaseRun) -> None:
        spec = run.spec
        run.customer = self.world.customer(run.mode, spec.customer)
        run.stripe_subscription = self.world.create_subscription(
            run.customer, spec.price, spec.quantity, run.mode
        )
        plan = self.connector.register(
            run.stripe_subscription, self.world.prices[spec.price], spec.floor, spec.licences
        )
        run.subscription = plan["id"]
        start, end = spec.period(self.year)
        run.rules = RulesModel(
            spec.floor,
            spec.quantity if spec.licences is None else spec.licences,
            spec.unit_amount,
            (start, end),
        )
        sub = self.world.subscription(run.stripe_subscription)
        item = sub["items"].data[0]
        mode = sub.billing_mode.type
        seat = plan["seat_types"][0]
        why = []
        if (item.current_period_start, item.current_period_end) != (ts(start), ts(end)):
            why.append("Stripe's period is not the one the case needs")
        if mode != run.mode or plan["billing_mode"] != run.mode:
            why.append(f"billing mode: Stripe {mode}, connector {plan['billing_mode']}")
        if item.quantity != run.rules.billed or seat["billed_quantity_now"] != run.rules.billed:
            why.append("billed quantity differs")
        self._row(
            run,
            "setup",
            f"{_period(start, end)} billed {run.rules.billed}",
            "-",
            f"billed {seat['billed_quantity_now']}, {plan['billing_mode']}",
            f"{_period_ts(item.current_period_start, item.current_period_end)} "
            f"qty {item.quantity}, {mode}",
            Verdict.MISMATCH if why else Verdict.MATCH,
            "; ".join(why),
        )

    # --- one seat change -----------------------------------------------------------------

    def _step(self, run: CaseRun, step: Step) -> None:
        assert run.rules is not None
        seen = self.world.seen(run.customer, run.stripe_subscription)
        quote: dict[str, Any] | None = None
        if step.action is Action.BUY:
            quote = self.connector.quote(run.subscription, step.quantity)
            change = self.connector.buy(run.subscription, step.quantity)
            rule = run.rules.buy(step.quantity, self.world.time())
        else:
            change = self.connector.release(run.subscription, step.quantity)
            rule = run.rules.release(step.quantity)
        self.connector.drain()
        entry = self.connector.ledger_entry(run.subscription, change["ledger_entry_id"])
        billed = self.world.billed_since(run.customer, run.stripe_subscription, seen)
        predicted = entry["expected_charge"]["amount"]
        predicted_where = _LEDGER_WHERE.get(entry["proration_behavior"] or "", Where.NOTHING)
        if predicted_where is Where.NEXT:
            run.deferred_predicted += predicted
        self._judge_step(run, step, rule, quote, predicted, predicted_where, billed)

    def _judge_step(
        self,
        run: CaseRun,
        step: Step,
        rule: RuleCharge,
        quote: dict[str, Any] | None,
        predicted: int,
        predicted_where: Where,
        billed: Billed,
    ) -> None:
        assert run.rules is not None
        tolerance = 0 if rule.where is Where.NOTHING else 1
        lines = [line for i in billed.invoices for line in i.lines] + list(billed.pending)
        charged = billed.invoiced_total + billed.pending_total
        if billed.invoices and billed.pending:
            charged_where = "now and next invoice"
        elif billed.invoices:
            charged_where = Where.NOW.value
        elif billed.pending:
            charged_where = Where.NEXT.value
        else:
            charged_where = Where.NOTHING.value
        why: list[str] = []
        quote_text = "-"
        if quote is not None:
            quoted = quote["charge"]["amount"]
            quoted_where = _QUOTE_WHERE[quote["invoiced"]]
            quote_text = f"{money(quoted)} {quoted_where}"
            if (quoted, quoted_where) != (predicted, predicted_where):
                why.append("the quote and the ledger disagree")
            quoted_date = quote["proration_date"]
            if rule.proration_date is not None and (
                quoted_date is None or datetime.fromisoformat(quoted_date) != rule.proration_date
            ):
                why.append(f"proration date {quoted_date}, rules {rule.proration_date:%Y-%m-%d}")
        if charged_where != predicted_where.value:
            why.append(f"Stripe billed {charged_where}, the connector said {predicted_where}")
        if abs(charged - predicted) > tolerance:
            why.append(f"Stripe {money(charged)} vs connector {money(predicted)}")
        if rule.where is not predicted_where or abs(rule.amount - predicted) > tolerance:
            why.append("the connector departs from the rules")
        if abs(rule.amount - charged) > tolerance:
            why.append("Stripe departs from the rules")
        if rule.proration_date is not None:
            _, end = run.rules.period
            wanted = (ts(rule.proration_date), ts(end))
            wrong = [ln for ln in lines if (ln.period_start, ln.period_end) != wanted]
            if wrong:
                why.append(
                    f"line period {_period_ts(wrong[0].period_start, wrong[0].period_end)}, "
                    f"expected {_period_ts(*wanted)}"
                )
        verdict = Verdict.MATCH
        if why:
            verdict = Verdict.MISMATCH
        elif charged != predicted or charged != rule.amount:
            verdict = Verdict.ROUNDING
        self._row(
            run,
            step.label(self.year),
            f"{_exact(rule.exact)} {rule.where}",
            quote_text,
            f"{money(predicted)} {predicted_where}",
            f"{money(charged)} {charged_where}{_lines(lines)}",
            verdict,
            "; ".join(why),
        )

    # --- the renewal ---------------------------------------------------------------------

    def _before_renewal(self, run: CaseRun) -> None:
        """What the connector expects the renewal to bill, read just before it happens."""
        if not run.subscription:
            return
        run.renewal_seen = self.world.seen(run.customer, run.stripe_subscription)
        run.renewal_plan = self.connector.plan(run.subscription)

    def _renewal(self, run: CaseRun) -> None:
        assert run.rules is not None and run.renewal_seen is not None
        plan = run.renewal_plan
        billed = self.world.billed_since(run.customer, run.stripe_subscription, run.renewal_seen)
        cycle = [i for i in billed.invoices if i.billing_reason == "subscription_cycle"]
        predicted_quantity = plan["seat_types"][0]["billed_quantity_at_renewal"]
        predicted = plan["recurring_amount_at_renewal"]["amount"] + run.deferred_predicted
        rules_amount = run.rules.renewal_amount
        rules_quantity = run.rules.renewal_quantity
        tolerance = len(run.rules.deferred)  # each deferred proration rounds on its own
        _, end = run.rules.period
        next_end = _next_period_end(run.spec, end)
        rules_text = f"{rules_quantity} seats, {_exact(rules_amount)}"
        ledger_text = f"{predicted_quantity} seats, {money(predicted)}"
        why: list[str] = []
        if len(cycle) != 1:
            self._row(
                run,
                "renewal",
                rules_text,
                "-",
                ledger_text,
                f"{len(cycle)} renewal invoices",
                Verdict.MISMATCH,
                "expected one renewal invoice",
            )
            return
        [invoice] = cycle
        recurring = [line for line in invoice.lines if not line.proration]
        quantity = recurring[0].quantity if len(recurring) == 1 else None
        if quantity != predicted_quantity:
            why.append(f"Stripe bills {quantity} seats, the connector said {predicted_quantity}")
        if predicted_quantity != rules_quantity:
            why.append("the connector departs from the rules")
        if abs(invoice.total - predicted) > tolerance:
            why.append(f"Stripe {money(invoice.total)} vs connector {money(predicted)}")
        if abs(rules_amount - invoice.total) > tolerance or abs(rules_amount - predicted) > (
            tolerance
        ):
            why.append("the amount departs from the rules")
        if recurring and (recurring[0].period_start, recurring[0].period_end) != (
            ts(end),
            ts(next_end),
        ):
            line = recurring[0]
            why.append(f"renewal line period {_period_ts(line.period_start, line.period_end)}")
        verdict = Verdict.MATCH
        if why:
            verdict = Verdict.MISMATCH
        elif invoice.total != predicted or invoice.total != rules_amount:
            verdict = Verdict.ROUNDING
        self._row(
            run,
            f"renewal {end:%Y-%m-%d}",
            rules_text,
            "-",
            ledger_text,
            f"{quantity} seats, {money(invoice.total)} {invoice.status}"
            + _lines(list(invoice.lines)),
            verdict,
            "; ".join(why),
        )


def _next_period_end(spec: CaseSpec, end: datetime) -> datetime:
    if spec.price is PriceKind.MONTHLY:
        return end.replace(year=end.year + end.month // 12, month=end.month % 12 + 1)
    return end.replace(year=end.year + 1)


def _exact(value: Fraction) -> str:
    if value.denominator == 1:
        return money(int(value))
    return f"{float(value):,.2f}"


def _lines(lines: list[Line]) -> str:
    return f" [{' '.join(line.describe() for line in lines)}]" if lines else ""


def _period(start: datetime, end: datetime) -> str:
    return f"{start:%Y-%m-%d}..{end:%Y-%m-%d}"


def _period_ts(start: int, end: int) -> str:
    return _period(utc(start), utc(end))
