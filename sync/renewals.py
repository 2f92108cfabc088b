"""Period roll-over: when a subscription's period has ended, adopt Stripe's new period and
start it at max(floor, licences at renewal) with the peak reset (BILLING_RULES 3)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime

from sqlalchemy import select

from connector.adapters.database import SessionFactory
from connector.adapters.models import SeatType, Subscription
from connector.adapters.stripe_port import StripePort, StripeSubscription
from connector.domain.proration import Period
from connector.services.seats import start_period

log = logging.getLogger(__name__)
ENDED = ("canceled", "incomplete_expired")


def adopt_stripe_state(
    sessions: SessionFactory, subscription_id: str, stripe_sub: StripeSubscription, now: datetime
) -> bool:
    """Take Stripe's period, status and quantities for one subscription; renew the counts if
    Stripe has moved to a new period. Returns whether a renewal happened."""
    with sessions.begin() as session:
        subscription = session.get_one(Subscription, subscription_id, with_for_update=True)
        subscription.status = stripe_sub.status
        subscription.billing_mode = stripe_sub.billing_mode
        items = {i.stripe_subscription_item_id: i for i in stripe_sub.items}
        renewed = False
        if stripe_sub.items:
            first = stripe_sub.items[0]
            renewed = start_period(
                session, subscription, Period(first.period_start, first.period_end)
            )
        for seat_type in session.scalars(
            select(SeatType).where(SeatType.subscription_id == subscription_id)
        ):
            item = items.get(seat_type.stripe_subscription_item_id)
            if item is not None:
                seat_type.stripe_quantity, seat_type.stripe_seen_at = item.quantity, now
        return renewed


def process_renewals(
    sessions: SessionFactory, port: StripePort, clock: Callable[[], datetime]
) -> int:
    """Roll every subscription whose period has ended to Stripe's new period."""
    now = clock()
    with sessions() as session:
        due = session.execute(
            select(Subscription.id, Subscription.stripe_subscription_id).where(
                Subscription.current_period_end <= now, Subscription.status.not_in(ENDED)
            )
        ).all()
    renewed = 0
    for subscription_id, stripe_subscription_id in due:
        try:
            stripe_sub = port.retrieve_subscription(stripe_subscription_id)
            renewed += adopt_stripe_state(sessions, subscription_id, stripe_sub, now)
        except Exception:  # one subscription's failure never stops the others
            log.exception("renewal check of %s failed", subscription_id)
    return renewed
