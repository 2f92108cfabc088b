"""Customers and their balance (credit and debit carried between invoices).

Part of ``stripe_sandbox``, a test and demo tool: never used with real money.
"""

from __future__ import annotations

from stripe_sandbox.errors import bad_request
from stripe_sandbox.objects import BalanceTransaction, Customer, Json, customer_json
from stripe_sandbox.state.base import previous_attributes
from stripe_sandbox.state.catalogue import Catalogue

_BANK_TRANSFER_TYPES = {
    "eur": "eu_bank_transfer",
    "gbp": "gb_bank_transfer",
    "jpy": "jp_bank_transfer",
    "mxn": "mx_bank_transfer",
    "usd": "us_bank_transfer",
}
"""The bank transfer a cash balance is funded by, per currency (Stripe's ``funded`` types)."""


class Customers(Catalogue):
    """Creates customers and moves their balance."""

    def create_customer(
        self,
        *,
        email: str | None,
        name: str | None,
        metadata: dict[str, str],
        test_clock: str | None,
        description: str | None,
    ) -> Customer:
        cid = self.new_id("cus")
        n = self.books.counters["cus"]
        c = Customer(
            id=cid,
            created=self.now,
            email=email,
            name=name,
            metadata=metadata,
            invoice_prefix=f"SBX{n:05d}",
            test_clock=test_clock,
            description=description,
        )
        self.books.customers[cid] = c
        self.emit("customer.created", customer_json(c))
        return c

    def fund_cash_balance(
        self, c: Customer, *, amount: int, currency: str, reference: str | None = None
    ) -> Json:
        """Bank-transfer funds arriving in the customer's cash balance (not yet applied to
        an invoice): ``customer_cash_balance_transaction.created``, as Stripe emits it.
        Returns the ``customer_cash_balance_transaction`` (type ``funded``)."""
        c.cash_balance = {**c.cash_balance, currency: c.cash_balance.get(currency, 0) + amount}
        kind = _BANK_TRANSFER_TYPES.get(currency, "us_bank_transfer")
        txn: Json = {
            "id": self.new_id("ccsbtxn"),
            "object": "customer_cash_balance_transaction",
            "created": self.now,
            "currency": currency,
            "customer": c.id,
            "customer_account": None,
            "ending_balance": c.cash_balance[currency],
            "funded": {"bank_transfer": {"reference": reference, "type": kind}},
            "livemode": False,
            "net_amount": amount,
            "type": "funded",
        }
        self.emit("customer_cash_balance_transaction.created", txn)
        return txn

    def add_balance_transaction(
        self,
        c: Customer,
        *,
        amount: int,
        currency: str,
        type_: str,
        description: str | None = None,
        metadata: dict[str, str] | None = None,
        invoice: str | None = None,
    ) -> BalanceTransaction:
        """Move the customer's balance (negative = credit) and record why."""
        if c.currency is not None and c.currency != currency:
            raise bad_request(
                f"The currency {currency} does not match the customer's currency {c.currency}.",
                param="currency",
            )
        before = customer_json(c)
        c.currency = currency
        c.balance += amount
        txn = BalanceTransaction(
            id=self.new_id("cbtxn"),
            customer=c.id,
            amount=amount,
            currency=currency,
            created=self.now,
            ending_balance=c.balance,
            type=type_,
            description=description,
            metadata=metadata or {},
            invoice=invoice,
        )
        self.books.balance_transactions[txn.id] = txn
        # Stripe has no ``customer.balance_transaction.created`` event: a balance
        # change shows up as ``customer.updated`` with the previous balance.
        after = customer_json(c)
        self.emit("customer.updated", after, previous_attributes(before, after))
        return txn
