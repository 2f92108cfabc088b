"""Running the handlers of stored events, after the delivery was acknowledged.

Each due event (waiting, or failed with its backoff over; oldest by Stripe's `created`
first) is claimed, its handler run, and the outcome recorded. Claiming is safe with
several workers: on PostgreSQL the candidate row is locked with `FOR UPDATE SKIP LOCKED`,
and on both databases the claim is an UPDATE guarded by the status and attempt count just
read (a lost race changes no row). A claim expires (`next_attempt_at`), so an event whose
worker died is taken again. A handler that raises leaves the event failed with its error,
to be tried again with exponential backoff, and after `MAX_EVENT_ATTEMPTS` runs it stays
failed, visible to ops (`seatsync events list --status failed`), until ops retry it.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from connector.adapters.database import SessionFactory
from connector.adapters.models import StripeEvent
from connector.domain.stripe_events import DUE_STATUSES, EventStatus, next_event_attempt
from connector.errors import Conflict, NotFound
from connector.observability import log_context
from webhooks.handlers import HANDLERS, HandlerContext, WebhookEvent
from webhooks.store import EVENTS

log = logging.getLogger(__name__)

# How long a worker holds an event it runs; past it, another worker may take it.
CLAIM_SECONDS = 300


@dataclass
class ProcessReport:
    handled: int = 0
    failed: int = 0
    given_up: int = 0
    ignored: int = 0


@dataclass(frozen=True, slots=True)
class _Claim:
    id: str
    type: str
    attempts: int  # including this run
    payload: dict[str, Any]


def process_due_events(
    sessions: SessionFactory,
    ctx: HandlerContext,
    now: datetime,
    limit: int = 100,
    *,
    jitter: Callable[[], float] = random.random,
) -> ProcessReport:
    """Run the handlers of up to `limit` events due at `now`, one claim at a time."""
    report = ProcessReport()
    for _ in range(limit):
        claim = _claim_next(sessions, now, ctx.clock())
        if claim is None:
            break
        with log_context(event_id=claim.id):  # on every record its handler logs
            _run(sessions, ctx, claim, jitter, report)
    return report


def _claim_next(sessions: SessionFactory, now: datetime, claimed_at: datetime) -> _Claim | None:
    for _ in range(5):  # a lost race (no row lock on SQLite) tries the next candidate
        with sessions.begin() as session:
            row = session.execute(
                select(StripeEvent.id, StripeEvent.type, StripeEvent.status, StripeEvent.attempts)
                .where(StripeEvent.status.in_(DUE_STATUSES), StripeEvent.next_attempt_at <= now)
                .order_by(StripeEvent.created, StripeEvent.id)
                .limit(1)
                .with_for_update(skip_locked=True)
            ).first()
            if row is None:
                return None
            claimed = session.execute(
                update(StripeEvent)
                .where(
                    StripeEvent.id == row.id,
                    StripeEvent.status == row.status,
                    StripeEvent.attempts == row.attempts,
                )
                .values(
                    status=EventStatus.PROCESSING,
                    attempts=row.attempts + 1,
                    next_attempt_at=claimed_at + timedelta(seconds=CLAIM_SECONDS),
                )
                .execution_options(synchronize_session=False)
            )
            if claimed.rowcount != 1:  # type: ignore[attr-defined]
                continue
            payload = session.scalar(select(StripeEvent.payload).where(StripeEvent.id == row.id))
            return _Claim(row.id, row.type, row.attempts + 1, payload or {})
    return None


def _run(
    sessions: SessionFactory,
    ctx: HandlerContext,
    claim: _Claim,
    jitter: Callable[[], float],
    report: ProcessReport,
) -> None:
    handler = HANDLERS.get(claim.type)
    if handler is None:  # stored while a handler existed; none now
        _finish(sessions, claim, status=EventStatus.IGNORED, next_attempt_at=None)
        report.ignored += 1
        return
    try:
        handler(WebhookEvent.from_payload(claim.payload), ctx)
    except Exception as error:  # recorded on the event and retried: never swallowed
        failed_at = ctx.clock()
        retry_at = next_event_attempt(claim.attempts, failed_at, jitter())
        log.warning(
            "handler of %s %s failed (attempt %d, %s): %s",
            claim.type,
            claim.id,
            claim.attempts,
            f"retry at {retry_at.isoformat()}" if retry_at else "given up",
            error,
            exc_info=True,
        )
        _finish(
            sessions,
            claim,
            status=EventStatus.FAILED,
            next_attempt_at=retry_at,
            last_error=f"{type(error).__name__}: {error}"[:4000],
        )
        if retry_at is None:
            report.given_up += 1
            EVENTS.labels(claim.type, "given_up").inc()
        else:
            report.failed += 1
            EVENTS.labels(claim.type, "failed").inc()
        return
    _finish(
        sessions, claim, status=EventStatus.HANDLED, next_attempt_at=None, handled_at=ctx.clock()
    )
    report.handled += 1
    EVENTS.labels(claim.type, "handled").inc()


def _finish(
    sessions: SessionFactory,
    claim: _Claim,
    *,
    status: EventStatus,
    next_attempt_at: datetime | None,
    **values: Any,
) -> None:
    """Record the outcome, unless the claim expired and another worker took the event."""
    with sessions.begin() as session:
        done = session.execute(
            update(StripeEvent)
            .where(
                StripeEvent.id == claim.id,
                StripeEvent.status == EventStatus.PROCESSING,
                StripeEvent.attempts == claim.attempts,
            )
            .values(status=status, next_attempt_at=next_attempt_at, **values)
            .execution_options(synchronize_session=False)
        )
    if done.rowcount != 1:  # type: ignore[attr-defined]
        log.warning("event %s was taken over by another worker; its outcome stands", claim.id)


# --- for ops -----------------------------------------------------------------------------


def stored_events(session: Session, status: EventStatus | None, limit: int) -> list[StripeEvent]:
    """Stored events, newest first, of one status or all."""
    query = select(StripeEvent).order_by(StripeEvent.created.desc(), StripeEvent.id.desc())
    if status is not None:
        query = query.where(StripeEvent.status == status)
    return list(session.scalars(query.limit(limit)))


def retry_event(session: Session, event_id: str, now: datetime) -> StripeEvent:
    """Queue a failed event to be handled again now (one more run, even if it was given
    up). An event already waiting or running is left as it is: asking twice is harmless."""
    event = session.get(StripeEvent, event_id, with_for_update=True)
    if event is None:
        raise NotFound("event_not_found", f"no stored Stripe event {event_id}")
    if event.status in (EventStatus.HANDLED, EventStatus.IGNORED):
        raise Conflict(
            "event_not_failed",
            f"event {event_id} is {event.status}: there is nothing to retry",
            status=str(event.status),
        )
    if event.status == EventStatus.FAILED:
        event.status = EventStatus.RECEIVED
        event.next_attempt_at = now
    return event
