"""The clock: moving time renews subscriptions and auto-finalizes drafts on the way.

Part of ``stripe_sandbox``, a test and demo tool: never used with real money.
A renewal drafts the invoice at the period end; Stripe finalizes (and collects)
it about an hour later.  :meth:`Clock.preview_renewal` renders the next one.
"""

from __future__ import annotations

from stripe_sandbox.calendar_math import period_end
from stripe_sandbox.errors import bad_request
from stripe_sandbox.objects import Invoice, Subscription
from stripe_sandbox.state.base import previous_attributes
from stripe_sandbox.state.invoices import RENEWAL_FINALIZE_DELAY
from stripe_sandbox.state.subscriptions import Subscriptions


class Clock(Subscriptions):
    """Moves time forward and renews."""

    def _period_end(self, s: Subscription, index: int) -> int:
        price = self.books.prices[self.books.items[s.items[0]].price]
        return period_end(s.billing_cycle_anchor, price.interval, price.interval_count, index)

    def advance_to(self, target: int) -> None:
        """Move time forward, renewing and finalizing whatever falls due on the way."""
        if target < self.now:
            raise ValueError(f"cannot move the clock back from {self.now} to {target}")
        while True:
            due = self._next_due(target)
            if due is None:
                break
            self.now = max(self.now, due)
            self._run_due(due)
        self.now = target

    def _next_due(self, target: int) -> int | None:
        times: list[int] = []
        for s in self.books.subscriptions.values():
            if s.status in ("canceled", "incomplete_expired", "incomplete"):
                continue
            times.append(min(self.books.items[i].period_end for i in s.items))
        for inv in self.books.invoices.values():
            if inv.status == "draft" and inv.auto_advance and inv.automatically_finalizes_at:
                times.append(inv.automatically_finalizes_at)
        due = [t for t in times if t <= target]
        return min(due) if due else None

    def _run_due(self, at: int) -> None:
        for s in list(self.books.subscriptions.values()):
            if s.status in ("canceled", "incomplete_expired", "incomplete"):
                continue
            if min(self.books.items[i].period_end for i in s.items) <= at:
                self._renew(s)
        for inv in list(self.books.invoices.values()):
            if (
                inv.status == "draft"
                and inv.auto_advance
                and inv.automatically_finalizes_at is not None
                and inv.automatically_finalizes_at <= at
            ):
                self._auto_finalize(inv)

    def _renew(self, s: Subscription) -> None:
        before = self.subscription_json(s)
        first = self.books.items[s.items[0]]
        old_start, old_end = first.period_start, first.period_end
        if s.cancel_at_period_end:
            # Stripe: pending prorations of a subscription set to cancel at the period
            # end "are left in place and collected at the end of the period" - a final
            # invoice (no new period) that finalizes and charges like a renewal's.
            final: Invoice | None = None
            if self._pending_items(s.customer, s.id):
                final = self._new_invoice(
                    self.customer(s.customer),
                    s,
                    billing_reason="subscription_cycle",
                    auto_advance=True,
                    period=(old_start, old_end),
                )
                self._attach_pending(final, s.customer, s.id)
                s.latest_invoice = final.id
            s.status = "canceled"
            s.canceled_at = old_end
            s.ended_at = old_end
            after = self.subscription_json(s)
            self.emit("customer.subscription.deleted", after, previous_attributes(before, after))
            if final is not None:
                self.emit("invoice.created", self.invoice_json(final))
            return
        s.periods_elapsed += 1
        new_end = self._period_end(s, s.periods_elapsed)
        for si_id in s.items:
            si = self.books.items[si_id]
            si.period_start, si.period_end = old_end, new_end
            si.billed_quantity, si.billed_price = si.quantity, si.price
        after = self.subscription_json(s)
        inv = self._new_invoice(
            self.customer(s.customer),
            s,
            billing_reason="subscription_cycle",
            auto_advance=True,
            period=(old_start, old_end),
        )
        for si_id in s.items:
            si = self.books.items[si_id]
            self._add_recurring_line(inv, s, si, si.period_start, si.period_end)
        self._record_recurring_debits(inv)
        self._attach_pending(inv, s.customer, s.id)
        s.latest_invoice = inv.id
        after = self.subscription_json(s)
        self.emit("customer.subscription.updated", after, previous_attributes(before, after))
        self.emit("invoice.created", self.invoice_json(inv))

    def _auto_finalize(self, inv: Invoice) -> None:
        paid = self.finalize(inv, attempt_payment=True)
        if not paid and inv.subscription is not None and inv.status == "open":
            s = self.books.subscriptions[inv.subscription]
            if s.status == "active" and inv.attempted:
                before = self.subscription_json(s)
                s.status = "past_due"
                after = self.subscription_json(s)
                self.emit(
                    "customer.subscription.updated", after, previous_attributes(before, after)
                )

    # --- renewal previews -------------------------------------------------------------

    def preview_renewal(self, s: Subscription, preview_id: str) -> Invoice:
        """The invoice the next renewal would produce (on a silent clone)."""
        end = min(self.books.items[i].period_end for i in s.items)
        inv = self._new_invoice(
            self.customer(s.customer),
            s,
            billing_reason="upcoming",
            auto_advance=True,
            period=(self.books.items[s.items[0]].period_start, end),
            invoice_id=preview_id,
        )
        inv.created = end
        next_end = self._period_end(s, s.periods_elapsed + 1)
        # Set to cancel at the period end, it renews no more: only the pending items
        # (its final invoice, see _renew) remain.
        for si_id in [] if s.cancel_at_period_end else s.items:
            self._add_recurring_line(
                inv, s, self.books.items[si_id], end, next_end, line_prefix="il_tmp"
            )
        self._attach_pending(inv, s.customer, s.id, line_prefix="il_tmp", attach=False)
        if not inv.lines:
            raise bad_request(
                "No upcoming invoices for a subscription set to cancel at the period end "
                "with nothing pending.",
                code="invoice_upcoming_none",
            )
        self._preview_balance(inv)
        inv.next_payment_attempt = end + RENEWAL_FINALIZE_DELAY
        return inv
