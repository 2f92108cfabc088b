"""What every seat change updates besides the counts, in the same transaction: the true-up
period's peak number assigned (BILLING_RULES 5: a holder assigned and removed a second
later still counts) and the over-allocation notice crossing."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.orm import Session

from connector.adapters.models import SeatType, Subscription
from connector.domain.seats import SeatCounts
from connector.domain.true_up import peak_after
from connector.services import notices


def track(
    session: Session,
    now: datetime,
    subscription: Subscription,
    seat_type: SeatType,
    counts: SeatCounts,
) -> None:
    """Called with the counts a change leaves; the seat type row is locked."""
    peak = peak_after(seat_type.peak_assigned, counts.in_use)
    if peak != seat_type.peak_assigned:  # an unchanged value would still flush the row
        seat_type.peak_assigned = peak
    notices.note_over_allocation(session, now, subscription, seat_type, counts)
