"""Prorations: the credit and charge invoice items a quantity or price change creates.

Part of ``stripe_sandbox``, a test and demo tool: never used with real money.
Per-second on the item's current period; classic mode credits the item's current
quantity and price, flexible mode what the period was billed for.
"""

from __future__ import annotations

from stripe_sandbox.calendar_math import fmt_date, prorate
from stripe_sandbox.errors import bad_request
from stripe_sandbox.objects import TIMES, InvoiceItem, Price, Subscription, SubscriptionItem
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

    def _prorate(
        self, s: Subscription, si: SubscriptionItem, at: int, new_qty: int, new_price: str
    ) -> list[InvoiceItem]:
        """Credit the old quantity's unused time and charge the new one's remaining time.

        Classic mode credits the item's current quantity/price (even if that was
        never paid for); flexible mode credits what the period was billed for.
        """
        if s.billing_mode == "classic":
            old_qty, old_price_id = si.quantity, si.price
        else:
            old_qty, old_price_id = si.billed_quantity, si.billed_price
        start, end = si.period_start, si.period_end
        if s.billing_mode == "flexible" and (old_qty, old_price_id) == (new_qty, new_price):
            return []
        created: list[InvoiceItem] = []
        old_price = self.books.prices[old_price_id]
        new_p = self.books.prices[new_price]
        if old_qty > 0:
            name = self.books.products[old_price.product].name
            ii = self._new_invoice_item(
                s,
                si,
                old_price,
                amount=-prorate(old_qty, old_price.unit_amount, start, end, at),
                quantity=old_qty,
                description=f"Unused time on {_qty_name(old_qty, name)} after {fmt_date(at)}",
                period=(at, end),
            )
            created.append(ii)
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
        si.billed_quantity = new_qty
        si.billed_price = new_price
        return created

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
