"""Prorations: the credit and charge invoice items a quantity or price change creates.

Part of ``stripe_sandbox``, a test and demo tool: never used with real money.
Per-second on the item's current period; classic mode credits the item's current
quantity and price, flexible mode what the period was billed for: one credit per debit
it reverses (the period's recurring line, earlier prorations' debits), each a share of
that debit's own amount, rounded on its own.
"""

from __future__ import annotations

from dataclasses import replace
from fractions import Fraction

from stripe_sandbox.calendar_math import fmt_date, prorate, round_half_away
from stripe_sandbox.errors import bad_request
from stripe_sandbox.objects import (
    TIMES,
    Debit,
    Invoice,
    InvoiceItem,
    Price,
    Subscription,
    SubscriptionItem,
)
from stripe_sandbox.state.invoices import Invoices


class Prorations(Invoices):
    """Creates proration invoice items."""

    def _check_proration_date(self, si: SubscriptionItem, proration_date: int | None) -> None:
        if proration_date is None:
            return
        if not si.period_start <= proration_date < si.period_end:
            raise bad_request(
                f"The proration_date ({proration_date}) must be within the current "
                f"billing period of the subscription item {si.id} "
                f"([{si.period_start}, {si.period_end})).",
                param="proration_date",
            )

    def _record_recurring_debits(self, inv: Invoice) -> None:
        """The recurring lines of a subscription's first or renewal invoice are the new
        period's first debits (a renewal's pending prorations belong to the old one)."""
        for line in inv.lines:
            si = self.books.items.get(line.subscription_item or "")
            if si is None or line.proration or line.invoice_item is not None:
                continue
            debit = Debit(
                quantity=line.quantity,
                price=line.price or si.price,
                amount=line.amount,
                start=line.period_start,
                end=line.period_end,
                covered_until=line.period_end,
                invoice=inv.id,
                line=line.id,
            )
            si.debits = (debit,)

    def _prorate(
        self, s: Subscription, si: SubscriptionItem, at: int, new_qty: int, new_price: str
    ) -> list[InvoiceItem]:
        """Credit the unused time of what was billed and charge the new quantity's
        remaining time.

        Classic mode writes one credit from the item's current quantity and price (even
        if that was never paid for).  Flexible mode "uses the original debited amount":
        one credit per debit whose time it takes back, ``amount * unused / debited
        time`` of that debit, each rounded separately (Stripe, "Compare classic and
        flexible billing mode": billed across multiple debits, "Stripe generates
        multiple credit prorations").  Each credit names its debit in
        ``proration_details.credited_items``.
        """
        start, end = si.period_start, si.period_end
        if s.billing_mode == "flexible" and (si.billed_quantity, si.billed_price) == (
            new_qty,
            new_price,
        ):
            return []
        created: list[InvoiceItem] = []
        if s.billing_mode == "classic":
            if si.quantity > 0:
                price = self.books.prices[si.price]
                debit = next(
                    (d for d in reversed(si.debits) if d.covered_until > max(d.start, at)),
                    si.debits[-1] if si.debits else None,
                )
                amount = prorate(si.quantity, price.unit_amount, start, end, at)
                created.append(
                    self._credit(s, si, price, si.quantity, amount, (at, end), at, debit)
                )
            si.debits = tuple(
                replace(d, covered_until=min(d.covered_until, max(d.start, at))) for d in si.debits
            )
        else:
            kept: list[Debit] = []
            for d in si.debits:
                begin = max(d.start, at)
                if d.covered_until > begin and d.end > d.start:
                    amount = round_half_away(
                        Fraction(d.amount * (d.covered_until - begin), d.end - d.start)
                    )
                    price = self.books.prices[d.price]
                    created.append(
                        self._credit(
                            s, si, price, d.quantity, amount, (begin, d.covered_until), at, d
                        )
                    )
                    d = replace(d, covered_until=begin)
                kept.append(d)
            si.debits = tuple(kept)
        new_p = self.books.prices[new_price]
        if new_qty > 0:
            name = self.books.products[new_p.product].name
            ii = self._new_invoice_item(
                s,
                si,
                new_p,
                amount=prorate(new_qty, new_p.unit_amount, start, end, at),
                quantity=new_qty,
                description=f"Remaining time on {_qty_name(new_qty, name)} after {fmt_date(at)}",
                period=(at, end),
            )
            created.append(ii)
            si.debits = (
                *si.debits,
                Debit(
                    quantity=new_qty,
                    price=new_price,
                    amount=ii.amount,
                    start=at,
                    end=end,
                    covered_until=end,
                    invoice_item=ii.id,
                ),
            )
        si.billed_quantity = new_qty
        si.billed_price = new_price
        return created

    def _credit(
        self,
        s: Subscription,
        si: SubscriptionItem,
        price: Price,
        quantity: int,
        amount: int,
        period: tuple[int, int],
        at: int,
        debit: Debit | None,
    ) -> InvoiceItem:
        """A credit proration (``-amount``) naming the debit it takes back: its invoice
        item while that is pending, else the invoice line(s) that billed it."""
        name = self.books.products[price.product].name
        ii = self._new_invoice_item(
            s,
            si,
            price,
            amount=-amount,
            quantity=quantity,
            description=f"Unused time on {_qty_name(quantity, name)} after {fmt_date(at)}",
            period=period,
        )
        if debit is None:
            return ii
        if debit.invoice is not None and debit.line is not None:
            ii.credited_lines = (debit.invoice, (debit.line,))
            return ii
        billed = self.books.invoice_items.get(debit.invoice_item or "")
        inv = self.books.invoices.get(billed.invoice) if billed and billed.invoice else None
        if billed is None or inv is None:
            ii.credited_invoice_item = debit.invoice_item
        else:
            lines = tuple(x.id for x in inv.lines if x.invoice_item == billed.id)
            ii.credited_lines = (inv.id, lines)
        return ii

    def _new_invoice_item(
        self,
        s: Subscription,
        si: SubscriptionItem,
        price: Price,
        *,
        amount: int,
        quantity: int,
        description: str,
        period: tuple[int, int],
    ) -> InvoiceItem:
        ii = InvoiceItem(
            id=self.new_id("ii"),
            customer=s.customer,
            currency=price.currency,
            amount=amount,
            description=description,
            date=self.now,
            period_start=period[0],
            period_end=period[1],
            quantity=quantity,
            price=price.id,
            proration=True,
            subscription=s.id,
            subscription_item=si.id,
        )
        self.books.invoice_items[ii.id] = ii
        return ii


def _qty_name(quantity: int, name: str) -> str:
    return name if quantity == 1 else f"{quantity} {TIMES} {name}"
