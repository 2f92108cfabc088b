"""Over-allocation notices (BILLING_RULES 5, seed 002): settings, the crossing, delivery.

Per contract: an e-mail address, a threshold and optionally a callback URL (signed with a
secret of its own, shown once). Per seat type, the crossing is decided in the transaction
of the seat change that makes it (`note_over_allocation`, called by the ledger's one
entry point for seat changes): reaching the threshold writes one notice row per channel —
an outbox — and marks the seat type alerted; falling back below re-arms it. A job
(`deliver_due`) sends the rows, retrying with backoff; a row once sent is never sent again.
"""

from __future__ import annotations

import json
import logging
import random
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from connector.adapters.database import SessionFactory
from connector.adapters.models import Notice, NoticeSettings, SeatType, Subscription
from connector.adapters.notify import DeliveryFailed, NoticeChannels
from connector.adapters.repository import counts_of, find_subscription, seat_types_of
from connector.domain import seats as domain
from connector.domain.notices import (
    MAX_NOTICE_ATTEMPTS,
    NoticeChannel,
    NoticeStatus,
    notice_retry_delay,
    over_allocation_crossing,
)
from connector.domain.seats import SeatCounts

log = logging.getLogger(__name__)

OVER_ALLOCATION = "seat_type.over_allocated"
SECRET_PREFIX = "nsec_"
CLAIM = timedelta(minutes=5)  # how long one delivery may take before another may try


# --- settings ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SettingsChange:
    settings: NoticeSettings
    new_secret: str | None  # shown once: when a callback secret was made


def get_settings(session: Session, subscription_ref: str) -> NoticeSettings | None:
    subscription = find_subscription(session, subscription_ref)
    return session.get(NoticeSettings, subscription.id)


def put_settings(
    session: Session,
    subscription_ref: str,
    now: datetime,
    *,
    email: str | None,
    threshold: int,
    callback_url: str | None,
    rotate_secret: bool = False,
) -> SettingsChange:
    """Set where notices go. A callback URL gets a signing secret the first time (or when
    asked to rotate it); removing the URL drops the secret. The seat types are looked at
    again at once: one already at the new threshold gets its notice now, one below it is
    re-armed."""
    subscription = find_subscription(session, subscription_ref, lock=True)
    settings = session.get(NoticeSettings, subscription.id)
    if settings is None:
        settings = NoticeSettings(subscription_id=subscription.id, threshold=threshold)
        session.add(settings)
    settings.email, settings.threshold, settings.callback_url = email, threshold, callback_url
    settings.updated_at = now
    new_secret = None
    if callback_url is None:
        settings.callback_secret = None
    elif settings.callback_secret is None or rotate_secret:
        new_secret = settings.callback_secret = SECRET_PREFIX + secrets.token_hex(24)
    session.flush()
    for seat_type in seat_types_of(session, subscription.id, lock=True):
        note_over_allocation(session, now, subscription, seat_type, counts_of(session, seat_type))
    return SettingsChange(settings, new_secret)


# --- the crossing, in the seat change's transaction ------------------------------------------


def note_over_allocation(
    session: Session,
    now: datetime,
    subscription: Subscription,
    seat_type: SeatType,
    counts: SeatCounts,
) -> list[Notice]:
    """Decide, for the counts a change leaves, whether the over-allocation crossed the
    threshold; queue one notice per channel if it did. The seat type row is locked."""
    over = domain.over_allocation(counts)
    if over == 0 and not seat_type.over_allocation_alerted:
        return []  # nothing crossed and nothing to re-arm: no need to read the settings
    settings = session.get(NoticeSettings, subscription.id)
    if settings is None:
        seat_type.over_allocation_alerted = False
        return []
    crossing = over_allocation_crossing(over, settings.threshold, seat_type.over_allocation_alerted)
    seat_type.over_allocation_alerted = crossing.alerted
    if not crossing.notify:
        return []
    payload: dict[str, Any] = {
        "id": f"ntc_{secrets.token_hex(10)}",
        "type": OVER_ALLOCATION,
        "created": now.isoformat().replace("+00:00", "Z"),
        "subscription_id": subscription.id,
        "stripe_subscription_id": subscription.stripe_subscription_id,
        "seat_type": seat_type.name,
        "over_allocation": over,
        "threshold": settings.threshold,
        "licences": counts.licences,
        "assigned": counts.in_use,
    }
    targets = [
        (NoticeChannel.EMAIL, settings.email),
        (NoticeChannel.CALLBACK, settings.callback_url),
    ]
    queued = [
        Notice(
            subscription_id=subscription.id,
            seat_type_id=seat_type.id,
            kind=OVER_ALLOCATION,
            channel=channel.value,
            target=target,
            payload=payload,
            status=NoticeStatus.PENDING.value,
            attempts=0,
            next_attempt_at=now,
            created_at=now,
        )
        for channel, target in targets
        if target
    ]
    session.add_all(queued)
    return queued


# --- delivery ------------------------------------------------------------------------------


@dataclass
class DeliveryReport:
    sent: int = 0
    retrying: int = 0
    dead: int = 0
    errors: list[str] = field(default_factory=list)


def _claim(sessions: SessionFactory, notice_id: int, now: datetime) -> bool:
    """Take one pending notice for CLAIM (one atomic UPDATE): two workers never both send it."""
    with sessions.begin() as session:
        taken = session.execute(
            update(Notice)
            .where(
                Notice.id == notice_id,
                Notice.status == NoticeStatus.PENDING.value,
                or_(Notice.claimed_until.is_(None), Notice.claimed_until <= now),
            )
            .values(claimed_until=now + CLAIM)
        )
        return bool(taken.rowcount)  # type: ignore[attr-defined]


def email_text(payload: dict[str, Any]) -> tuple[str, str]:
    subject = (
        f"Over-allocation: {payload['seat_type']} is {payload['over_allocation']} over its "
        f"licences ({payload['subscription_id']})"
    )
    text = (
        f"Subscription {payload['subscription_id']} "
        f"(Stripe {payload['stripe_subscription_id']}), seat type {payload['seat_type']}:\n"
        f"{payload['assigned']} assigned, {payload['licences']} licences: "
        f"{payload['over_allocation']} over-allocated (your threshold: "
        f"{payload['threshold']}).\n\n"
        "Buy licences, remove assignments, or pay at the true-up: it bills the highest "
        "number assigned during the true-up period.\n"
        "You will not be told again until the over-allocation falls below the threshold.\n"
    )
    return subject, text


def _send(session: Session, notice: Notice, channels: NoticeChannels) -> None:
    payload = notice.payload
    if notice.channel == NoticeChannel.EMAIL:
        subject, text = email_text(payload)
        message_id = f"<{payload['id']}.{notice.id}@seatsync.invalid>"
        channels.send_email(notice.target, subject, text, message_id)
        return
    settings = session.get(NoticeSettings, notice.subscription_id)
    secret = settings.callback_secret if settings is not None else None
    if secret is None:
        raise DeliveryFailed("the contract no longer has a callback secret")
    body = json.dumps(payload, separators=(",", ":"), sort_keys=True).encode()
    channels.post_callback(notice.target, body, secret, payload["id"])


def deliver_due(
    sessions: SessionFactory,
    channels: NoticeChannels,
    clock: Callable[[], datetime],
    jitter: Callable[[], float] = random.random,
    limit: int = 100,
) -> DeliveryReport:
    """Send the notices that are due; one failure never stops the others."""
    report = DeliveryReport()
    now = clock()
    with sessions() as session:
        due = session.scalars(
            select(Notice.id)
            .where(Notice.status == NoticeStatus.PENDING.value, Notice.next_attempt_at <= now)
            .order_by(Notice.id)
            .limit(limit)
        ).all()
    for notice_id in due:
        if not _claim(sessions, notice_id, now):
            continue
        error: str | None = None
        with sessions() as session:
            notice = session.get_one(Notice, notice_id)
            try:
                _send(session, notice, channels)
            except DeliveryFailed as failure:
                error = str(failure)
            except Exception as failure:  # a bug or an odd target: kept, retried, shown
                log.exception("notice %s failed", notice_id)
                error = f"unexpected: {failure}"
        with sessions.begin() as session:
            notice = session.get_one(Notice, notice_id)
            notice.claimed_until = None
            notice.attempts += 1
            if error is None:
                notice.status, notice.sent_at, notice.last_error = NoticeStatus.SENT, clock(), None
                report.sent += 1
            elif notice.attempts >= MAX_NOTICE_ATTEMPTS:
                notice.status, notice.last_error = NoticeStatus.DEAD, error
                report.dead += 1
                report.errors.append(f"notice {notice_id}: {error}")
                log.error("notice %s given up: %s", notice_id, error)
            else:
                notice.last_error = error
                notice.next_attempt_at = clock() + notice_retry_delay(notice.attempts, jitter())
                report.retrying += 1
                report.errors.append(f"notice {notice_id}: {error}")
    return report
