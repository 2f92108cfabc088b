"""Customers and customer balance transactions, and their JSON.

Part of ``stripe_sandbox``, a test and demo tool: never used with real money.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from stripe_sandbox.objects.base import Json, Tracked


@dataclass
class Customer(Tracked):
    id: str
    created: int
    email: str | None
    name: str | None
    metadata: dict[str, str]
    invoice_prefix: str
    test_clock: str | None = None
    balance: int = 0
    currency: str | None = None
    next_invoice_sequence: int = 1
    description: str | None = None
    # Bank-transfer funds received but not applied to invoices: {currency: minor units}.
    cash_balance: dict[str, int] = field(default_factory=dict)


@dataclass
class BalanceTransaction(Tracked):
    id: str
    customer: str
    amount: int
    currency: str
    created: int
    ending_balance: int
    type: str
    description: str | None = None
    metadata: dict[str, str] = field(default_factory=dict)
    invoice: str | None = None


def customer_json(c: Customer) -> Json:
    return {
        "id": c.id,
        "object": "customer",
        "address": None,
        "balance": c.balance,
        "created": c.created,
        "currency": c.currency,
        "default_source": None,
        "delinquent": False,
        "description": c.description,
        "discount": None,
        "email": c.email,
        "invoice_prefix": c.invoice_prefix,
        "invoice_settings": {
            "custom_fields": None,
            "default_payment_method": None,
            "footer": None,
            "rendering_options": None,
        },
        "livemode": False,
        "metadata": dict(c.metadata),
        "name": c.name,
        "next_invoice_sequence": c.next_invoice_sequence,
        "phone": None,
        "preferred_locales": [],
        "shipping": None,
        "tax_exempt": "none",
        "test_clock": c.test_clock,
    }


def cash_balance_json(c: Customer) -> Json:
    """``customer.cash_balance`` (only present when expanded)."""
    return {
        "object": "cash_balance",
        "available": dict(c.cash_balance) or None,
        "customer": c.id,
        "customer_account": None,
        "livemode": False,
        "settings": {"reconciliation_mode": "automatic", "using_merchant_default": True},
    }


def balance_transaction_json(t: BalanceTransaction) -> Json:
    return {
        "id": t.id,
        "object": "customer_balance_transaction",
        "amount": t.amount,
        "checkout_session": None,
        "created": t.created,
        "credit_note": None,
        "currency": t.currency,
        "customer": t.customer,
        "customer_account": None,
        "description": t.description,
        "ending_balance": t.ending_balance,
        "invoice": t.invoice,
        "livemode": False,
        "metadata": dict(t.metadata),
        "type": t.type,
    }
