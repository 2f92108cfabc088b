"""The named states of a seat change on its way to Stripe, and of Stripe's own objects.

An outbox record is the change as the connector accepted it: PENDING until Stripe holds
its quantity (DONE) or until it can never be sent (DEAD, kept with Stripe's answer and its
amount for ops, who send it again — back to PENDING — or write it off: WRITTEN_OFF).

Each Stripe write made for it is journalled as a call: SENDING before it leaves, then OK,
REJECTED, or UNKNOWN when no definite answer came (settled on the next run: confirmed by
Stripe's quantity or sent again with the same key), FAILED when an unanswered write is
known not to have applied.
"""

from __future__ import annotations

from enum import StrEnum


class OutboxStatus(StrEnum):
    PENDING = "pending"
    DONE = "done"
    DEAD = "dead"
    # A dead charge ops decided not to collect: its seats count as paid for the period.
    WRITTEN_OFF = "written_off"


class OutboxKind(StrEnum):
    CHANGE = "change"  # a seat change accepted through the API (or a reconcile repair)
    RENEWAL_CORRECTION = "renewal_correction"  # Stripe renewed at a stale quantity
    # Stripe renewed a period at a stale quantity and the period has ended since (the sync
    # was down for more than a period): a one-off charge or credit for that period.
    ENDED_PERIOD_CORRECTION = "ended_period_correction"
    # A charge ops wrote off is billed by Stripe after all (so Stripe counts its seats as
    # billed: flexible mode credits what was billed), and its waiver credits the same amount
    # on the same next invoice: the customer pays nothing for the seats.
    WRITE_OFF = "write_off"
    WAIVER = "waiver"


class CallOutcome(StrEnum):
    SENDING = "sending"
    OK = "ok"
    UNKNOWN = "unknown"
    FAILED = "failed"
    REJECTED = "rejected"


UNANSWERED_CALLS = (CallOutcome.SENDING, CallOutcome.UNKNOWN)


class StripeOperation(StrEnum):
    UPDATE_QUANTITY = "update_quantity"
    INVOICE_PENDING = "invoice_pending"
    TRUE_UP_INVOICE = "true_up_invoice"  # a true-up's one-off invoice (no seat type: no quantity)
    # An ended period's correction: a one-off invoice (no seat type: no quantity)
    ENDED_PERIOD_INVOICE = "ended_period_invoice"
    # A write-off's waiver: a pending invoice item crediting the charge (no quantity)
    WAIVER_ITEM = "waiver_item"


# During a trial Stripe bills nothing; the first invoice after it bills the whole quantity.
TRIALING = "trialing"

# Stripe subscription statuses after which nothing more is billed: the one definition.
ENDED_SUBSCRIPTION_STATUSES = frozenset({"canceled", "incomplete_expired"})
