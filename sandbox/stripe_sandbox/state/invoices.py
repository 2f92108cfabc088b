"""Invoices and payments: drafts, finalization with the customer balance, collection.

Part of ``stripe_sandbox``, a test and demo tool: never used with real money.
Covers manual invoices, the invoice that ``always_invoice`` would create now
(:meth:`Invoices.preview_pending`), payment attempts (armed failures decline
them), out-of-band and partial or overpaying payments, and voiding.

Over ~400 lines: an invoice's whole life (draft, items, finalization, payment, void,
delete) is one state machine and reads best in one place.
"""

from __future__ import annotations

from stripe_sandbox.errors import bad_request, card_declined
from stripe_sandbox.objects import (
    Customer,
    Invoice,
    InvoiceItem,
    InvoicePayment,
    LineItem,
    Subscription,
    SubscriptionItem,
    invoice_payment_json,
    line_description,
)
from stripe_sandbox.state.base import previous_attributes
from stripe_sandbox.state.customers import Customers

RENEWAL_FINALIZE_DELAY = 3600
"""Stripe leaves a renewal invoice in draft for about an hour before finalizing it."""


class Invoices(Customers):
    """Creates, finalizes, collects and voids invoices."""

    def _new_invoice(
        self,
        customer: Customer,
        s: Subscription | None,
        *,
        billing_reason: str,
        auto_advance: bool,
        period: tuple[int, int],
        invoice_id: str | None = None,
    ) -> Invoice:
        currency = s.currency if s is not None else (customer.currency or "usd")
        inv = Invoice(
            id=invoice_id or self.new_id("in"),
            customer=customer.id,
            currency=currency,
            created=self.now,
            billing_reason=billing_reason,
            subscription=s.id if s is not None else None,
            period_start=period[0],
            period_end=period[1],
            auto_advance=auto_advance,
            subscription_metadata=dict(s.metadata) if s is not None else None,
        )
        if auto_advance:
            inv.automatically_finalizes_at = self.now + RENEWAL_FINALIZE_DELAY
        if invoice_id is None:
            self.books.invoices[inv.id] = inv
        return inv

    def _add_recurring_line(
        self,
        inv: Invoice,
        s: Subscription,
        si: SubscriptionItem,
        start: int,
        end: int,
        *,
        line_prefix: str = "il",
    ) -> None:
        price = self.books.prices[si.price]
        product = self.books.products[price.product]
        inv.lines = [
            *inv.lines,
            LineItem(
                id=self.new_id(line_prefix),
                invoice=inv.id,
                amount=si.quantity * price.unit_amount,
                currency=price.currency,
                description=line_description(si.quantity, product.name, price),
                period_start=start,
                period_end=end,
                quantity=si.quantity,
                price=price.id,
                product=product.id,
                proration=False,
                subscription=s.id,
                subscription_item=si.id,
                invoice_item=None,
            ),
        ]

    def _pending_items(self, customer: str, subscription: str | None) -> list[InvoiceItem]:
        return [
            ii
            for ii in self.books.invoice_items.values()
            if ii.customer == customer
            and ii.invoice is None
            and (subscription is None or ii.subscription == subscription)
        ]

    def _attach_pending(
        self,
        inv: Invoice,
        customer: str,
        subscription: str | None,
        *,
        line_prefix: str = "il",
        attach: bool = True,
    ) -> None:
        for ii in self._pending_items(customer, subscription):
            if attach:
                ii.invoice = inv.id
            price = self.books.prices.get(ii.price) if ii.price else None
            inv.lines = [
                *inv.lines,
                LineItem(
                    id=self.new_id(line_prefix),
                    invoice=inv.id,
                    amount=ii.amount,
                    currency=ii.currency,
                    description=ii.description,
                    period_start=ii.period_start,
                    period_end=ii.period_end,
                    quantity=ii.quantity,
                    price=ii.price,
                    product=price.product if price else None,
                    proration=ii.proration,
                    subscription=ii.subscription,
                    subscription_item=ii.subscription_item,
                    invoice_item=ii.id,
                ),
            ]

    def create_invoice(
        self,
        *,
        customer: Customer,
        subscription: Subscription | None,
        include_pending: bool,
        auto_advance: bool,
        collection_method: str,
        metadata: dict[str, str],
    ) -> Invoice:
        inv = self._new_invoice(
            customer,
            subscription,
            billing_reason="manual",
            auto_advance=auto_advance,
            period=(self.now, self.now),
        )
        inv.collection_method = collection_method
        inv.metadata = metadata
        if include_pending:
            self._attach_pending(inv, customer.id, subscription.id if subscription else None)
        self.emit("invoice.created", self.invoice_json(inv))
        return inv

    def add_invoice_item(
        self,
        *,
        customer: Customer,
        currency: str,
        amount: int,
        quantity: int,
        description: str,
        period: tuple[int, int],
        subscription: Subscription | None,
        invoice: Invoice | None,
        metadata: dict[str, str],
    ) -> InvoiceItem:
        """A one-off invoice item (``POST /v1/invoiceitems``): pending, or on a draft invoice
        given explicitly (then it is a line of that invoice at once)."""
        if invoice is not None:
            if invoice.customer != customer.id:
                raise bad_request(
                    f"The invoice {invoice.id} does not belong to customer {customer.id}.",
                    param="invoice",
                )
            if invoice.status != "draft":
                raise bad_request(
                    "You can only add invoice items to draft invoices.",
                    param="invoice",
                    code="invoice_not_editable",
                )
            if invoice.currency != currency:
                raise bad_request(
                    f"The currency {currency} does not match the invoice's {invoice.currency}.",
                    param="currency",
                )
        ii = InvoiceItem(
            id=self.new_id("ii"),
            customer=customer.id,
            currency=currency,
            amount=amount,
            description=description,
            date=self.now,
            period_start=period[0],
            period_end=period[1],
            quantity=quantity,
            price=None,
            proration=False,
            subscription=subscription.id if subscription is not None else None,
            subscription_item=None,
            invoice=invoice.id if invoice is not None else None,
            metadata=metadata,
        )
        self.books.invoice_items[ii.id] = ii
        if invoice is not None:
            invoice.lines = [
                *invoice.lines,
                LineItem(
                    id=self.new_id("il"),
                    invoice=invoice.id,
                    amount=amount,
                    currency=currency,
                    description=description,
                    period_start=period[0],
                    period_end=period[1],
                    quantity=quantity,
                    price=None,
                    product=None,
                    proration=False,
                    subscription=ii.subscription,
                    subscription_item=None,
                    invoice_item=ii.id,
                ),
            ]
        self.emit("invoiceitem.created", self.invoice_item_json(ii))
        return ii

    def finalize(self, inv: Invoice, *, attempt_payment: bool) -> bool:
        """Finalize a draft: apply the customer balance, number it, maybe collect.

        Returns True when the invoice ends up paid.
        """
        if inv.status != "draft":
            raise bad_request(
                "This invoice is already finalized, you can't re-finalize a non-draft invoice.",
                code="invoice_not_editable",
            )
        c = self.books.customers[inv.customer]
        total = inv.total
        balance = c.balance
        inv.starting_balance = balance
        if total < 0:
            # A credit invoice: nothing due, the credit lands on the balance.
            due, ending = 0, balance + total
        elif balance < 0:
            used = min(-balance, total)
            due, ending = total - used, balance + used
        else:
            # A debit balance is collected with this invoice.
            due, ending = total + balance, 0
        inv.amount_due_final = due
        inv.ending_balance = ending
        inv.status = "open"
        inv.finalized_at = self.now
        inv.automatically_finalizes_at = None
        inv.number = f"{c.invoice_prefix}-{c.next_invoice_sequence:04d}"
        c.next_invoice_sequence += 1
        balance_delta = inv.ending_balance - c.balance
        if balance_delta != 0:
            self.add_balance_transaction(
                c,
                amount=balance_delta,
                currency=inv.currency,
                type_="applied_to_invoice",
                invoice=inv.id,
            )
        self.emit("invoice.finalized", self.invoice_json(inv))
        if due == 0:
            self._mark_paid(inv, amount=0)
            return True
        if (
            attempt_payment
            and inv.collection_method == "charge_automatically"
            and (inv.auto_advance or inv.billing_reason != "manual")
        ):
            return self.attempt_payment(inv)
        return False

    def _take_failure(self, customer: str) -> bool:
        for f in self.books.payment_failures:
            if f.remaining > 0 and f.customer in (None, customer):
                f.remaining -= 1
                self.books.payment_failures = [
                    x for x in self.books.payment_failures if x.remaining > 0
                ]
                return True
        return False

    def attempt_payment(self, inv: Invoice) -> bool:
        """Charge the (imaginary) default card: succeeds unless a failure is armed."""
        inv.attempt_count += 1
        inv.attempted = True
        if self._take_failure(inv.customer):
            inv.next_payment_attempt = None
            self.emit("invoice.payment_failed", self.invoice_json(inv))
            return False
        pay = InvoicePayment(
            id=self.new_id("inpay"),
            invoice=inv.id,
            amount=inv.amount_remaining,
            currency=inv.currency,
            created=self.now,
            status="paid",
            payment_intent=self.new_id("pi"),
        )
        inv.payments = [*inv.payments, pay]
        self._mark_paid(inv, amount=inv.amount_remaining)
        self.emit("invoice_payment.paid", invoice_payment_json(pay))
        return True

    def _mark_paid(self, inv: Invoice, *, amount: int) -> None:
        inv.amount_paid += amount
        inv.status = "paid"
        inv.paid_at = self.now
        inv.next_payment_attempt = None
        self.emit("invoice.paid", self.invoice_json(inv))
        self.emit("invoice.payment_succeeded", self.invoice_json(inv))
        if inv.subscription is not None:
            s = self.books.subscriptions[inv.subscription]
            if s.status in ("past_due", "incomplete") and not any(
                i.status == "open" and i.subscription == s.id for i in self.books.invoices.values()
            ):
                before = self.subscription_json(s)
                s.status = "active"
                after = self.subscription_json(s)
                self.emit(
                    "customer.subscription.updated", after, previous_attributes(before, after)
                )

    def pay(self, inv: Invoice, *, paid_out_of_band: bool) -> None:
        if inv.status == "paid":
            raise bad_request("Invoice is already paid", code="invoice_already_paid")
        if inv.status in ("void", "uncollectible") and not paid_out_of_band:
            raise bad_request(f"This invoice can't be paid because it is {inv.status}.")
        if inv.status == "draft" and self.finalize(inv, attempt_payment=False):
            return
        if paid_out_of_band:
            inv.paid_out_of_band = True
            self._mark_paid(inv, amount=inv.amount_remaining)
            return
        if not self.attempt_payment(inv):
            raise card_declined()

    def void(self, inv: Invoice) -> None:
        if inv.status != "open":
            raise bad_request(
                f"You can only void open invoices; this invoice is {inv.status}.",
                code="invoice_not_editable" if inv.status == "draft" else None,
            )
        inv.status = "void"
        inv.voided_at = self.now
        self.emit("invoice.voided", self.invoice_json(inv))

    def delete_draft(self, inv: Invoice) -> None:
        """``DELETE /v1/invoices/{id}``: Stripe "permanently deletes a one-off invoice draft";
        a finalized invoice, or one a subscription created, must be voided instead.
        Emits ``invoice.deleted``; the invoice items it held become pending again (the
        sandbox's choice: Stripe's reference does not say)."""
        if inv.status != "draft":
            raise bad_request(
                f"You can only delete draft invoices; this invoice is {inv.status}. "
                "Void it instead.",
                code="invoice_not_editable",
            )
        if inv.billing_reason.startswith("subscription"):
            raise bad_request(
                "You can't delete an invoice created by a subscription; it is finalized "
                "automatically, and can be voided once it is open.",
                code="invoice_not_editable",
            )
        self.emit("invoice.deleted", self.invoice_json(inv))
        for ii in self.books.invoice_items.values():
            if ii.invoice == inv.id:
                ii.invoice = None
        # Last, so that nothing can fail after it (undo points restore by table size).
        del self.books.invoices[inv.id]

    def update_invoice(
        self,
        inv: Invoice,
        *,
        auto_advance: bool | None = None,
        due_date: int | None = None,
        days_until_due: int | None = None,
        metadata: dict[str, str] | None = None,
    ) -> None:
        """``POST /v1/invoices/{id}`` for what Stripe lets change after creation:
        ``auto_advance`` on draft and open invoices (false on an open one stops automatic
        collection: no retry is scheduled); ``due_date`` / ``days_until_due`` only on drafts
        with ``collection_method=send_invoice`` (a finalized invoice's due date never moves)."""
        before = self.invoice_json(inv)
        if auto_advance is not None:
            if inv.status not in ("draft", "open"):
                raise bad_request(
                    f"Automatic collection can only be changed on draft and open invoices; "
                    f"this invoice is {inv.status}.",
                    param="auto_advance",
                )
            inv.auto_advance = auto_advance
            if inv.status == "draft":
                inv.automatically_finalizes_at = (
                    self.now + RENEWAL_FINALIZE_DELAY if auto_advance else None
                )
            elif not auto_advance:
                inv.next_payment_attempt = None
        for param, value in (("due_date", due_date), ("days_until_due", days_until_due)):
            if value is None:
                continue
            if inv.collection_method != "send_invoice":
                raise bad_request(
                    f"{param} is only valid for invoices where collection_method=send_invoice.",
                    param=param,
                )
            if inv.status != "draft":
                raise bad_request(
                    f"{param} can only be updated on draft invoices; this invoice is {inv.status}.",
                    param=param,
                    code="invoice_not_editable",
                )
            inv.due_date = value if param == "due_date" else inv.created + value * 86400
        if metadata is not None:
            inv.metadata = metadata
        after = self.invoice_json(inv)
        changed = previous_attributes(before, after)
        if changed:
            self.emit("invoice.updated", after, changed)

    def receive_payment(self, inv: Invoice, amount: int) -> None:
        """A customer payment arriving through Stripe (e.g. a bank transfer).

        Paying more than remains sets ``amount_overpaid`` and credits the excess
        to the customer balance (type ``invoice_overpaid``), as Stripe does.
        """
        if inv.status != "open":
            raise bad_request(f"Invoice {inv.id} is {inv.status}, not open.")
        remaining = inv.amount_remaining
        pay = InvoicePayment(
            id=self.new_id("inpay"),
            invoice=inv.id,
            amount=amount,
            currency=inv.currency,
            created=self.now,
            status="paid",
            payment_intent=self.new_id("pi"),
        )
        inv.payments = [*inv.payments, pay]
        self.emit("invoice_payment.paid", invoice_payment_json(pay))
        if amount < remaining:
            inv.amount_paid += amount
            self.emit(
                "invoice.updated", self.invoice_json(inv), {"amount_paid": inv.amount_paid - amount}
            )
            return
        excess = amount - remaining
        inv.amount_overpaid = excess
        self._mark_paid(inv, amount=amount)
        if excess > 0:
            self.emit("invoice.overpaid", self.invoice_json(inv))
            self.add_balance_transaction(
                self.books.customers[inv.customer],
                amount=-excess,
                currency=inv.currency,
                type_="invoice_overpaid",
                invoice=inv.id,
            )

    # --- previews ---------------------------------------------------------------------

    def preview_pending(self, customer: Customer, s: Subscription, preview_id: str) -> Invoice:
        """The invoice ``always_invoice`` would produce now (on a silent clone)."""
        inv = self._new_invoice(
            customer,
            s,
            billing_reason="subscription_update",
            auto_advance=True,
            period=(self.now, self.now),
            invoice_id=preview_id,
        )
        self._attach_pending(inv, customer.id, s.id, line_prefix="il_tmp", attach=False)
        self._preview_balance(inv)
        return inv

    def _preview_balance(self, inv: Invoice) -> None:
        c = self.books.customers[inv.customer]
        total = inv.total
        inv.starting_balance = c.balance
        if total <= 0:
            inv.amount_due_final = 0
            inv.ending_balance = c.balance + min(total, 0)
        elif c.balance < 0:
            inv.amount_due_final = max(0, total + c.balance)
            inv.ending_balance = min(0, c.balance + total)
        else:
            inv.amount_due_final = total + c.balance
            inv.ending_balance = 0
        inv.automatically_finalizes_at = None
