"""Registering a contract: link an existing Stripe subscription, or create one."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from functools import partial
from typing import TypeVar

from sqlalchemy import select
from sqlalchemy.orm import Session

from connector.adapters.models import Account, SeatType, Subscription
from connector.adapters.stripe_port import (
    ItemBilling,
    StripeItem,
    StripePort,
    StripeSubscription,
    call_stripe,
)
from connector.domain.seats import Policy, SeatCounts, at_least_floor, paid_when_linked
from connector.errors import Conflict, Invalid
from connector.services import true_up
from connector.services.contracts import RegisterSubscription, SeatTypeContract
from connector.services.seats import ChangeContext, record_change

LIVE_STATUSES = {"active", "trialing", "past_due", "unpaid", "paused"}
T = TypeVar("T")


def new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(10)}"


def _match_item(contract: SeatTypeContract, stripe_sub: StripeSubscription) -> StripeItem:
    for item in stripe_sub.items:
        if contract.stripe_subscription_item_id:
            if item.stripe_subscription_item_id == contract.stripe_subscription_item_id:
                return item
        elif item.stripe_price_id == contract.stripe_price_id:
            return item
    wanted = contract.stripe_subscription_item_id or contract.stripe_price_id
    raise Invalid(
        "unknown_item",
        f"seat type {contract.name!r}: {wanted} is not a per-unit recurring price item of "
        f"{stripe_sub.stripe_subscription_id}",
    )


def _check_paid(contract: SeatTypeContract, item: StripeItem, licences: int) -> None:
    """Linking never bills silently: Stripe must already bill the licences and the floor."""
    needed = at_least_floor(contract.floor, licences)
    if item.quantity < needed:
        raise Invalid(
            "stripe_quantity_too_low",
            f"seat type {contract.name!r}: Stripe bills {item.quantity} but the contract "
            f"needs {needed} (floor {contract.floor}, licences {licences}); register with "
            f"licences <= {item.quantity} and buy the rest, or raise the quantity in Stripe",
        )


@dataclass(frozen=True, slots=True)
class StripeContract:
    """A subscription as Stripe shows it, with what each item was billed this period."""

    subscription: StripeSubscription
    billing: dict[str, ItemBilling]  # item id -> what Stripe billed and credited this period


def fetch_or_create(
    port: StripePort, body: RegisterSubscription, stripe_key: str | None
) -> StripeContract:
    """The subscription to link (or a new one) and what its items were billed and credited
    this period (see `paid_when_linked`)."""
    stripe_sub = _fetch_or_create(port, body, stripe_key)
    billing = {
        item.stripe_subscription_item_id: call_stripe(
            f"invoices of {stripe_sub.stripe_subscription_id}",
            partial(
                port.item_billing,
                stripe_sub.stripe_customer_id,
                stripe_sub.stripe_subscription_id,
                item,
            ),
        )
        for item in stripe_sub.items
    }
    return StripeContract(stripe_sub, billing)


def _fetch_or_create(
    port: StripePort, body: RegisterSubscription, stripe_key: str | None
) -> StripeSubscription:
    """Read the subscription to link, or create it. Called outside any database
    transaction (no lock is held while Stripe answers). Creating needs `stripe_key`, derived
    from the request's Idempotency-Key, so a retried request gets the same subscription
    back instead of a second one."""
    if body.stripe_subscription_id:
        return call_stripe(
            f"subscription {body.stripe_subscription_id}",
            lambda: port.retrieve_subscription(body.stripe_subscription_id or ""),
        )
    quantities = [
        (seat.stripe_price_id or "", at_least_floor(seat.floor, seat.licences or 0))
        for seat in body.seat_types
    ]
    if stripe_key is None:
        raise Invalid(
            "idempotency_key_required",
            "creating a subscription charges money: send an Idempotency-Key header",
        )
    key = stripe_key
    return call_stripe(
        f"creating a subscription for {body.stripe_customer_id}",
        lambda: port.create_subscription(body.stripe_customer_id or "", quantities, key),
    )


def register_subscription(
    session: Session,
    ctx: ChangeContext,
    body: RegisterSubscription,
    contract_in_stripe: StripeContract,
) -> Subscription:
    """Store the contract for a subscription read from (or just created in) Stripe. A
    refused registration writes nothing."""
    stripe_sub = contract_in_stripe.subscription
    created = body.stripe_customer_id is not None
    # One the connector just created may still wait for its first payment.
    live = LIVE_STATUSES | ({"incomplete"} if created else set())
    if stripe_sub.status not in live:
        raise Conflict(
            "subscription_not_live",
            f"{stripe_sub.stripe_subscription_id} is {stripe_sub.status}: only a live "
            "subscription can be linked",
        )
    already = session.scalars(
        select(Subscription).where(
            Subscription.stripe_subscription_id == stripe_sub.stripe_subscription_id
        )
    ).first()
    if already is not None:
        raise Conflict(
            "already_registered",
            f"{stripe_sub.stripe_subscription_id} is already registered as {already.id}",
            subscription_id=already.id,
        )

    matched = [(contract, _match_item(contract, stripe_sub)) for contract in body.seat_types]
    item_ids = [item.stripe_subscription_item_id for _, item in matched]
    if len(set(item_ids)) != len(item_ids):
        raise Invalid("duplicate_item", "two seat types name the same Stripe subscription item")
    first = matched[0][1]

    account = session.scalars(
        select(Account).where(Account.stripe_customer_id == stripe_sub.stripe_customer_id)
    ).first()
    if account is None:
        account = Account(
            id=new_id("acc"), stripe_customer_id=stripe_sub.stripe_customer_id, created_at=ctx.now
        )
        session.add(account)

    subscription = Subscription(
        id=new_id("ssub"),
        account_id=account.id,
        stripe_subscription_id=stripe_sub.stripe_subscription_id,
        currency=stripe_sub.currency,
        billing_mode=stripe_sub.billing_mode,
        status=stripe_sub.status,
        billing_cycle_anchor=stripe_sub.billing_cycle_anchor,
        current_period_start=first.period_start,
        current_period_end=first.period_end,
        invoice_now_threshold_days=body.invoice_now_threshold_days,
        proration_granularity=body.proration_granularity.value,
        billing_timezone=body.billing_timezone,
        created_at=ctx.now,
    )
    session.add(subscription)
    session.flush()

    for contract, item in matched:
        licences = item.quantity if contract.licences is None else contract.licences
        _check_paid(contract, item, licences)
        billing = contract_in_stripe.billing.get(item.stripe_subscription_item_id)
        paid = (
            item.quantity
            if billing is None
            else paid_when_linked(item.quantity, billing.highest_quantity, billing.credited)
        )
        if contract.policy is Policy.AUTO:
            licences = 0  # auto licences follow holders; they are assigned next
        seat_type = SeatType(
            subscription_id=subscription.id,
            name=contract.name,
            stripe_subscription_item_id=item.stripe_subscription_item_id,
            stripe_price_id=item.stripe_price_id,
            unit_amount=item.unit_amount,
            interval=item.interval,
            interval_count=item.interval_count,
            policy=contract.policy.value,
            floor=contract.floor,
            extra_seats_allowed=(
                body.extra_seats_allowed
                if contract.extra_seats_allowed is None
                else contract.extra_seats_allowed
            ),
            membership_required=contract.membership_required,
            licences=licences,
            # What Stripe has billed this period is paid: re-adding up to it is free.
            peak=paid,
            stripe_quantity=item.quantity,
            stripe_seen_at=ctx.now,
            paid_quantity=paid,
            paid_period_start=item.period_start,
            opening_billed=at_least_floor(contract.floor, paid),
        )
        true_up.configure(seat_type, contract, ctx.now)  # team licences, true-up dates
        session.add(seat_type)
        session.flush()
        counts = SeatCounts(licences=licences, peak=seat_type.peak, in_use=0)
        record_change(
            session,
            ctx,
            subscription,
            seat_type,
            counts,
            counts,
            action="register",
            stripe_quantity_before=item.quantity,
            reason=f"registered; Stripe item {item.stripe_subscription_item_id} holds "
            f"{item.quantity} at {item.unit_amount} {item.currency}/{item.interval}",
        )
    return subscription
