"""The self-check's objects in the Stripe account: test clocks, customers, a product, prices
and subscriptions — created through the official SDK, read back as Stripe bills them, and
deleted at the end.

Stripe's test-clock limits are kept: one clock per billing mode, at most three customers a
clock and three subscriptions a customer, and no advance of more than two intervals of the
shortest subscription on a clock. All clocks move in step, to the same frozen time, which
is the connector's clock (`ClockTime`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from typing import Any

import stripe

from connector.selfcheck.cases import CURRENCY, MONTHLY_UNIT_AMOUNT, YEARLY_UNIT_AMOUNT, PriceKind

METADATA = {"created_by": "seatsync selfcheck"}
# Stripe test mode's card that always pays; the customer's default for its invoices.
TEST_CARD = "pm_card_visa"


class SelfCheckError(Exception):
    """The self-check could not go on (Stripe refused, a clock failed, ...)."""


def ts(moment: datetime) -> int:
    return int(moment.timestamp())


def utc(seconds: int) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


class ClockTime:
    """The connector's clock: the test clocks' frozen time, read after every advance."""

    def __init__(self) -> None:
        self._now: datetime | None = None

    def __call__(self) -> datetime:
        if self._now is None:
            raise SelfCheckError("the test clocks have not been read yet")
        return self._now

    def set(self, frozen_time: int) -> None:
        self._now = utc(frozen_time)


@dataclass(frozen=True, slots=True)
class Line:
    """An invoice line or a pending invoice item, as far as the check needs it."""

    amount: int
    quantity: int | None
    proration: bool
    period_start: int
    period_end: int

    def describe(self) -> str:
        quantity = "" if self.quantity is None else f"x{self.quantity}"
        return f"{self.amount:+,}{quantity}"


@dataclass(frozen=True, slots=True)
class InvoiceSeen:
    id: str
    billing_reason: str | None
    status: str | None
    total: int
    lines: tuple[Line, ...]


@dataclass(frozen=True, slots=True)
class Seen:
    """What a subscription's customer had been billed at one moment (ids only)."""

    invoices: frozenset[str]
    pending_items: frozenset[str]


@dataclass(frozen=True, slots=True)
class Billed:
    """What Stripe billed a subscription since a `Seen`."""

    invoices: tuple[InvoiceSeen, ...]
    pending: tuple[Line, ...]

    @property
    def invoiced_total(self) -> int:
        return sum(i.total for i in self.invoices)

    @property
    def pending_total(self) -> int:
        return sum(line.amount for line in self.pending)


def _parent_subscription(item: Any) -> str | None:
    parent = getattr(item, "parent", None)
    details = getattr(parent, "subscription_details", None) if parent is not None else None
    found = getattr(details, "subscription", None) if details is not None else None
    return None if found is None else str(found if isinstance(found, str) else found.id)


def _line_proration(line: Any) -> bool:
    parent = getattr(line, "parent", None)
    for name in ("subscription_item_details", "invoice_item_details"):
        details = getattr(parent, name, None) if parent is not None else None
        if details is not None:
            return bool(getattr(details, "proration", False))
    return False


class StripeWorld:
    """Creates, observes and deletes the self-check's Stripe objects."""

    def __init__(
        self,
        client: stripe.StripeClient,
        run_id: str,
        *,
        echo: Callable[[str], None],
        poll_seconds: float = 2.0,
        advance_timeout_seconds: float = 600.0,
    ) -> None:
        self.client = client
        self.run_id = run_id
        self.echo = echo
        self.poll_seconds = poll_seconds
        self.advance_timeout_seconds = advance_timeout_seconds
        self.time = ClockTime()
        self.clocks: dict[str, str] = {}  # billing mode -> test clock id
        self.product: str | None = None
        self.prices: dict[PriceKind, str] = {}
        self._customers: dict[tuple[str, str], str] = {}  # (mode, group) -> customer id

    # --- setting up ------------------------------------------------------------------

    def create_catalogue(self) -> datetime:
        """The product and its two prices; returns Stripe's clock (the product's
        creation time), from which the run's year is chosen."""
        product = self.client.v1.products.create(
            {"name": f"seatsync selfcheck {self.run_id} seat", "metadata": METADATA}
        )
        self.product = product.id
        for kind, amount, interval in (
            (PriceKind.YEARLY, YEARLY_UNIT_AMOUNT, "year"),
            (PriceKind.MONTHLY, MONTHLY_UNIT_AMOUNT, "month"),
        ):
            price = self.client.v1.prices.create(
                {
                    "product": product.id,
                    "currency": CURRENCY,
                    "unit_amount": amount,
                    "recurring": {"interval": interval},
                    "metadata": METADATA,
                }
            )
            self.prices[kind] = price.id
        return utc(product.created)

    def create_clocks(self, modes: tuple[str, ...], frozen_time: datetime) -> None:
        for mode in modes:
            clock = self.client.v1.test_helpers.test_clocks.create(
                {"frozen_time": ts(frozen_time), "name": f"seatsync selfcheck {self.run_id} {mode}"}
            )
            self.clocks[mode] = clock.id
        self._read_time()

    def customer(self, mode: str, group: str) -> str:
        """The customer of `group` on `mode`'s clock, created on first use, paying with
        Stripe's test card."""
        found = self._customers.get((mode, group))
        if found is None:
            created = self.client.v1.customers.create(
                {
                    "name": f"seatsync selfcheck {self.run_id} {mode} {group}",
                    "test_clock": self.clocks[mode],
                    "payment_method": TEST_CARD,
                    "invoice_settings": {"default_payment_method": TEST_CARD},
                    "metadata": METADATA,
                }
            )
            found = self._customers[(mode, group)] = created.id
        return found

    def create_subscription(self, customer: str, price: PriceKind, quantity: int, mode: str) -> str:
        created = self.client.v1.subscriptions.create(
            {
                "customer": customer,
                "items": [{"price": self.prices[price], "quantity": quantity}],
                "billing_mode": {"type": mode},
                "payment_behavior": "error_if_incomplete",
                "metadata": METADATA,
            }
        )
        return created.id

    # --- time ------------------------------------------------------------------------

    def advance_to(self, target: datetime) -> None:
        """Advance every clock to `target` and wait until all are ready."""
        goal = ts(target)
        for clock_id in self.clocks.values():
            # Re-read: in the Stripe sandbox all test clocks share one time.
            if self.client.v1.test_helpers.test_clocks.retrieve(clock_id).frozen_time < goal:
                self.client.v1.test_helpers.test_clocks.advance(clock_id, {"frozen_time": goal})
        deadline = time.monotonic() + self.advance_timeout_seconds
        for clock_id in self.clocks.values():
            while True:
                clock = self.client.v1.test_helpers.test_clocks.retrieve(clock_id)
                if clock.status == "ready":
                    break
                if clock.status == "internal_failure":
                    raise SelfCheckError(f"test clock {clock_id} failed to advance (Stripe)")
                if time.monotonic() > deadline:
                    raise SelfCheckError(
                        f"test clock {clock_id} still {clock.status} after "
                        f"{self.advance_timeout_seconds:.0f} s"
                    )
                time.sleep(self.poll_seconds)
        if self._read_time() != goal:
            raise SelfCheckError(f"the test clocks are not at {target:%Y-%m-%d %H:%M}")

    def _read_time(self) -> int:
        frozen = {
            self.client.v1.test_helpers.test_clocks.retrieve(c).frozen_time
            for c in self.clocks.values()
        }
        if len(frozen) != 1:
            raise SelfCheckError(f"the test clocks disagree on the time: {sorted(frozen)}")
        [now] = frozen
        self.time.set(now)
        return now

    # --- what Stripe billed ------------------------------------------------------------

    def subscription(self, subscription_id: str) -> Any:
        return self.client.v1.subscriptions.retrieve(subscription_id)

    def seen(self, customer: str, subscription_id: str) -> Seen:
        invoices = self._invoices(subscription_id)
        return Seen(
            frozenset(i.id or "" for i in invoices),
            frozenset(ii.id or "" for ii in self._pending(customer, subscription_id)),
        )

    def billed_since(self, customer: str, subscription_id: str, seen: Seen) -> Billed:
        invoices = [i for i in self._invoices(subscription_id) if i.id not in seen.invoices]
        pending = [
            ii for ii in self._pending(customer, subscription_id) if ii.id not in seen.pending_items
        ]
        return Billed(
            tuple(self._invoice_seen(i) for i in reversed(invoices)),  # oldest first
            tuple(
                Line(
                    amount=ii.amount,
                    quantity=ii.quantity,
                    proration=bool(getattr(ii, "proration", False)),
                    period_start=ii.period.start,
                    period_end=ii.period.end,
                )
                for ii in pending
            ),
        )

    def _invoices(self, subscription_id: str) -> list[stripe.Invoice]:
        page = self.client.v1.invoices.list({"subscription": subscription_id, "limit": 100})
        return list(page.auto_paging_iter())

    def _pending(self, customer: str, subscription_id: str) -> list[stripe.InvoiceItem]:
        page = self.client.v1.invoice_items.list(
            {"customer": customer, "pending": True, "limit": 100}
        )
        return [ii for ii in page.auto_paging_iter() if _parent_subscription(ii) == subscription_id]

    def _invoice_seen(self, invoice: stripe.Invoice) -> InvoiceSeen:
        lines: list[Any] = list(invoice.lines.data)
        if invoice.lines.has_more:
            page = self.client.v1.invoices.line_items.list(invoice.id or "", {"limit": 100})
            lines = list(page.auto_paging_iter())
        return InvoiceSeen(
            id=invoice.id or "",
            billing_reason=invoice.billing_reason,
            status=invoice.status,
            total=invoice.total,
            lines=tuple(
                Line(
                    amount=line.amount,
                    quantity=line.quantity,
                    proration=_line_proration(line),
                    period_start=line.period.start,
                    period_end=line.period.end,
                )
                for line in lines
            ),
        )

    # --- cleaning up -------------------------------------------------------------------

    def cleanup(self) -> list[str]:
        """Delete the clocks (Stripe deletes their customers and subscriptions with them)
        and archive the prices and the product; returns what could not be done."""
        problems: list[str] = []

        def attempt(what: str, call: Callable[[], object]) -> None:
            try:
                call()
            except stripe.StripeError as error:
                problems.append(f"could not {what}: {error.user_message or error}")

        for clock_id in self.clocks.values():
            attempt(
                f"delete test clock {clock_id}",
                partial(self.client.v1.test_helpers.test_clocks.delete, clock_id),
            )
        for price_id in self.prices.values():
            attempt(
                f"archive price {price_id}",
                partial(self.client.v1.prices.update, price_id, {"active": False}),
            )
        if self.product is not None:
            product = self.product
            attempt(
                f"archive product {product}",
                partial(self.client.v1.products.update, product, {"active": False}),
            )
        return problems
