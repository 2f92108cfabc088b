"""Test clocks: Stripe's simulated time for the customers attached to one.

Part of ``stripe_sandbox``, a test and demo tool: never used with real money.

The double keeps ONE clock (``now``), so its test clocks share time: creating one with
a later ``frozen_time``, or advancing one, moves the double's clock — and so every
object, on any test clock or none — and every test clock then shows that time. What is
faithful to Stripe: the API and its shapes, ``frozen_time`` only moving forward, an
advance answered ``advancing`` and then ``ready``, renewals and invoice finalization
happening on the way exactly as :meth:`Clock.advance_to` makes them, the two-interval
limit on one advance, and deleting a clock deleting its customers with their
subscriptions, invoices and invoice items. What is not: a test clock cannot start
before the double's clock (Stripe accepts past frozen times), and one clock cannot be
advanced to a time before another's.
"""

from __future__ import annotations

from stripe_sandbox.calendar_math import add_interval, iso
from stripe_sandbox.errors import StripeError, bad_request
from stripe_sandbox.objects import Json
from stripe_sandbox.objects.test_clocks import TEST_CLOCK_LIFETIME, TestClock, clock_json
from stripe_sandbox.state.clock import Clock

_ENDED = ("canceled", "incomplete_expired")


class TestClocks(Clock):
    """Creates, advances and deletes test clocks on the double's one clock."""

    __test__ = False  # not a pytest test class

    def test_clock(self, clock_id: str, param: str | None = None) -> TestClock:
        c = self.books.test_clocks.get(clock_id)
        if c is None:
            raise StripeError(
                404 if param is None else 400,
                f"No such test clock: '{clock_id}'",
                code="resource_missing",
                param=param or "id",
            )
        return c

    def clock_json(self, c: TestClock, *, advancing_to: int | None = None) -> Json:
        return clock_json(c, advancing_to=advancing_to)

    def create_test_clock(self, *, frozen_time: int, name: str | None) -> TestClock:
        if frozen_time < self.now:
            raise bad_request(
                f"stripe_sandbox: its test clocks share the sandbox's one clock, now at "
                f"{iso(self.now)}; a test clock cannot start before that ({iso(frozen_time)}). "
                "(Stripe accepts a frozen_time in the past; start the sandbox earlier.)",
                param="frozen_time",
            )
        self._move_shared_time(frozen_time)
        c = TestClock(
            id=self.new_id("clock"),
            created=self.now,
            frozen_time=frozen_time,
            name=name,
            deletes_after=self.now + TEST_CLOCK_LIFETIME,
        )
        self.books.test_clocks[c.id] = c
        self.emit("test_helpers.test_clock.created", self.clock_json(c))
        return c

    def advance_test_clock(self, c: TestClock, frozen_time: int) -> Json:
        """Advance ``c`` (and so the double's clock) to ``frozen_time``; returns the clock
        as Stripe's advance call answers: still ``advancing``. The work is done before
        this returns, so the next retrieval shows it ``ready``."""
        if frozen_time <= c.frozen_time:
            raise bad_request(
                f"The frozen_time ({frozen_time}) must be after the test clock's current "
                f"frozen_time ({c.frozen_time}).",
                param="frozen_time",
            )
        limit, why = self._advance_limit(c)
        if frozen_time > limit:
            raise bad_request(
                f"A test clock cannot be advanced more than two intervals at a time: {why} "
                f"allows advancing to {limit} ({iso(limit)}) at most, not {frozen_time} "
                f"({iso(frozen_time)}).",
                param="frozen_time",
            )
        if frozen_time < self.now:
            raise bad_request(
                f"stripe_sandbox: its test clocks share the sandbox's one clock, already at "
                f"{iso(self.now)} (another test clock moved it); it cannot go back to "
                f"{iso(frozen_time)}.",
                param="frozen_time",
            )
        answer = self.clock_json(c, advancing_to=frozen_time)
        self.emit("test_helpers.test_clock.advancing", answer)
        self._move_shared_time(frozen_time)
        self.emit("test_helpers.test_clock.ready", self.clock_json(c))
        return answer

    def delete_test_clock(self, c: TestClock) -> Json:
        """Delete the clock with its customers and everything they own."""
        b = self.books
        customers = {cid for cid, cu in b.customers.items() if cu.test_clock == c.id}
        subscriptions = {sid for sid, s in b.subscriptions.items() if s.customer in customers}
        self.emit("test_helpers.test_clock.deleted", self.clock_json(c))
        # Only removals from here on: nothing below may fail (a failed request rolls back
        # additions and changes, never removals).
        for sid in subscriptions:
            for si_id in b.subscriptions[sid].items:
                b.items.pop(si_id, None)
            del b.subscriptions[sid]
        for si_id in [k for k, si in b.items.items() if si.subscription in subscriptions]:
            del b.items[si_id]  # items deleted from their subscription earlier
        b.invoice_items = {k: v for k, v in b.invoice_items.items() if v.customer not in customers}
        b.invoices = {k: v for k, v in b.invoices.items() if v.customer not in customers}
        b.balance_transactions = {
            k: v for k, v in b.balance_transactions.items() if v.customer not in customers
        }
        for cid in customers:
            del b.customers[cid]
        del b.test_clocks[c.id]
        return {"id": c.id, "object": "test_helpers.test_clock", "deleted": True}

    def _move_shared_time(self, target: int) -> None:
        if target > self.now:
            self.advance_to(target)
        for other in self.books.test_clocks.values():
            if other.frozen_time < self.now:
                other.frozen_time = self.now

    def _advance_limit(self, c: TestClock) -> tuple[int, str]:
        """Stripe: at most two intervals of the shortest subscription on the clock, or two
        years when it has none."""
        customers = {cid for cid, cu in self.books.customers.items() if cu.test_clock == c.id}
        best: tuple[int, str] | None = None
        for s in self.books.subscriptions.values():
            if s.customer not in customers or s.status in _ENDED or not s.items:
                continue
            price = self.books.prices[self.books.items[s.items[0]].price]
            limit = add_interval(c.frozen_time, price.interval, 2 * price.interval_count)
            if best is None or limit < best[0]:
                best = (limit, f"its shortest subscription ({s.id}, every {price.interval})")
        if best is None:
            best = (add_interval(c.frozen_time, "year", 2), "a clock without subscriptions")
        return best
