"""Which Stripe quantity updates bring an item from where it is to where it should be,
charging exactly the new billed seats (BILLING_RULES sections 3 and 4, STRIPE_NOTES).

Stripe prorates a quantity change as a credit on the old quantity plus a charge on the new
one. Classic billing mode credits the *current* quantity, flexible mode what was billed;
so before a prorated increase the item is first brought back to the quantity already paid
this period, without proration. Then the credit equals what was paid in both modes and
the customer pays for exactly the new seats.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from connector.domain.proration import ProrationBehavior


@dataclass(frozen=True, slots=True)
class PendingChange:
    """One outbox record: a seat change that moved what Stripe should hold or bill."""

    record_id: int
    billed_before: int  # billed (paid-for) quantity of the period before the change
    billed_after: int
    behavior: ProrationBehavior  # decided at the change time (30-day rule)
    proration_date: datetime | None


@dataclass(frozen=True, slots=True)
class QuantityUpdate:
    """One `POST /v1/subscriptions/{id}` setting the item's quantity."""

    quantity: int
    behavior: ProrationBehavior
    proration_date: datetime | None
    record_ids: tuple[int, ...]

    @property
    def charges(self) -> bool:
        return self.behavior is not ProrationBehavior.NONE


def plan_updates(
    held: int, paid: int, changes: Sequence[PendingChange], target: int
) -> list[QuantityUpdate]:
    """The fewest updates that charge what `changes` (in order, one period) owe and leave the
    item at `target`.

    `held` is what the item holds now (read fresh from Stripe); `paid` the quantity Stripe
    has charged for this period so far (the connector's high-water mark, kept per update
    sent), so a change is never charged twice. A change that raises the billed quantity
    above `paid` is charged pro rata from its date; one that lowers it (billed after <
    billed before: a renewal that billed a stale quantity, corrected from the period start)
    is credited the same way. Charges with the same decision (proration date and
    behaviour) merge into one update; the rest ends in one update without proration.
    """
    updates: list[QuantityUpdate] = []
    mergeable: QuantityUpdate | None = None  # the last update, if it charged an increase

    def prorate(to: int, change: PendingChange) -> None:
        nonlocal held, paid, mergeable
        if held != paid:  # restore the paid quantity, so the credit is what was paid
            updates.append(QuantityUpdate(paid, ProrationBehavior.NONE, None, ()))
        update = QuantityUpdate(to, change.behavior, change.proration_date, (change.record_id,))
        updates.append(update)
        mergeable = update if to > paid else None
        held = paid = to

    for change in changes:
        if change.billed_after < change.billed_before:  # a correction credit
            if paid > change.billed_after:
                prorate(change.billed_after, change)
        elif change.billed_after > paid and change.behavior is not ProrationBehavior.NONE:
            if mergeable is not None and (mergeable.behavior, mergeable.proration_date) == (
                change.behavior,
                change.proration_date,
            ):
                mergeable = replace(
                    mergeable,
                    quantity=change.billed_after,
                    record_ids=(*mergeable.record_ids, change.record_id),
                )
                updates[-1] = mergeable
                held = paid = change.billed_after
            else:
                prorate(change.billed_after, change)
    # Never above the paid mark without the charge for it (BILLING_RULES 4): a charge Stripe
    # refused waits for ops (retry or write-off), so its seats are not handed out free.
    final = min(target, paid)
    if held != final:
        updates.append(QuantityUpdate(final, ProrationBehavior.NONE, None, ()))
    return updates


def within_invoice_budget(
    updates: Sequence[QuantityUpdate], invoices_allowed: int
) -> list[QuantityUpdate]:
    """Stripe allows a subscription about 10 new invoices a minute and 20 a day. Updates
    that would invoice beyond `invoices_allowed` create prorations instead, to be invoiced
    at the next allowed moment (the sync sets it when Stripe has them)."""
    planned: list[QuantityUpdate] = []
    for update in updates:
        if update.behavior is ProrationBehavior.ALWAYS_INVOICE:
            if invoices_allowed > 0:
                invoices_allowed -= 1
            else:
                update = replace(update, behavior=ProrationBehavior.CREATE_PRORATIONS)
        planned.append(update)
    return planned


def retry_delay(
    attempts: int, jitter: float, base_seconds: int = 2, cap_seconds: int = 900
) -> timedelta:
    """Exponential backoff with jitter: `jitter` in [0, 1) spreads retries of many records
    so they do not hit Stripe together (half the delay is fixed, half random)."""
    delay = min(cap_seconds, base_seconds * 2 ** max(0, attempts - 1))
    return timedelta(seconds=delay / 2 + delay / 2 * jitter)
