"""Storing an event: the one write made before Stripe gets its 2xx.

A body that passed its signature check is still checked for the shape of a Stripe event
(`evt_` id, type, `data.object`) so nothing malformed is stored. The event id is the
primary key: a second delivery (or a concurrent one) inserts nothing and is acknowledged
as a duplicate.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from connector.adapters.database import SessionFactory
from connector.adapters.metrics import WEBHOOK_EVENTS
from connector.adapters.models import StripeEvent
from connector.domain.stripe_events import EventStatus
from webhooks.handlers import HANDLERS

# seatsync_webhook_events_total{type, outcome}
EVENTS = WEBHOOK_EVENTS

_EVENT_ID = re.compile(r"evt_[A-Za-z0-9_]{1,250}")
_EVENT_TYPE = re.compile(r"[a-z0-9_]+(\.[a-z0-9_]+)+")
_API_VERSION = re.compile(r"[A-Za-z0-9_.\-]{1,64}")
_LATEST_TIMESTAMP = 253402300799  # 9999-12-31T23:59:59Z


class InvalidEvent(ValueError):
    """The body is not a Stripe event."""


@dataclass(frozen=True, slots=True)
class IncomingEvent:
    id: str
    type: str
    created: datetime
    api_version: str | None
    livemode: bool
    payload: dict[str, Any]


def _refuse_constant(name: str) -> Any:
    raise InvalidEvent(f"{name} is not JSON")


def decode_event(body: bytes) -> IncomingEvent:
    """The event in a raw body (UTF-8 JSON), or InvalidEvent."""
    try:
        payload = json.loads(body.decode("utf-8"), parse_constant=_refuse_constant)
    except InvalidEvent:
        raise
    # Not UTF-8, not JSON, a number too long to convert, nested too deep.
    except (ValueError, RecursionError) as error:
        raise InvalidEvent(f"the body is not UTF-8 JSON ({type(error).__name__})") from error
    return parse_event(payload)


def parse_event(payload: Any) -> IncomingEvent:
    """Check a decoded event (a delivery or a listed one) and take what is stored apart."""
    if not isinstance(payload, dict):
        raise InvalidEvent("an event is a JSON object")
    event_id, event_type = payload.get("id"), payload.get("type")
    if not isinstance(event_id, str) or not _EVENT_ID.fullmatch(event_id):
        raise InvalidEvent("`id` must be a Stripe event id (evt_...)")
    if payload.get("object", "event") != "event":
        raise InvalidEvent("`object` must be 'event'")
    if not isinstance(event_type, str) or len(event_type) > 128:
        raise InvalidEvent("`type` must be an event type such as invoice.paid")
    if not _EVENT_TYPE.fullmatch(event_type):
        raise InvalidEvent("`type` must be an event type such as invoice.paid")
    created = payload.get("created")
    if isinstance(created, bool) or not isinstance(created, int):
        raise InvalidEvent("`created` must be a unix timestamp")
    if not 0 <= created <= _LATEST_TIMESTAMP:
        raise InvalidEvent("`created` is out of range")
    data = payload.get("data")
    if not isinstance(data, dict) or not isinstance(data.get("object"), dict):
        raise InvalidEvent("`data.object` must be an object")
    api_version = payload.get("api_version")
    if api_version is not None and (
        not isinstance(api_version, str) or not _API_VERSION.fullmatch(api_version)
    ):
        raise InvalidEvent("`api_version` must be a Stripe API version")
    livemode = payload.get("livemode", False)
    if not isinstance(livemode, bool):
        raise InvalidEvent("`livemode` must be true or false")
    return IncomingEvent(
        id=event_id,
        type=event_type,
        created=datetime.fromtimestamp(created, UTC),
        api_version=api_version,
        livemode=livemode,
        payload=payload,
    )


def _insert_once(insert: Any) -> Any:
    """`INSERT ... ON CONFLICT (id) DO NOTHING RETURNING id`, built once (its values are
    bound per delivery), so no statement is built and cached per request."""
    table = StripeEvent.metadata.tables[StripeEvent.__tablename__]
    return insert(table).on_conflict_do_nothing(index_elements=["id"]).returning(table.c.id)


# By dialect: {is PostgreSQL: statement}; SQLite (3.35+) has the same clause.
_INSERT_ONCE = {True: _insert_once(postgresql_insert), False: _insert_once(sqlite_insert)}


def store_event(sessions: SessionFactory, event: IncomingEvent, now: datetime) -> bool:
    """Store the event once; True when it was already stored (a duplicate delivery).
    Types without a handler are stored as ignored: kept, acknowledged, never run.

    One statement in one transaction, `INSERT ... ON CONFLICT (id) DO NOTHING`: a repeated
    delivery inserts no row, and a concurrent one waits for the first insert's transaction
    and then inserts nothing either (a look-up before the insert cost a second transaction
    on every delivery: bench/webhooks.py)."""
    handled = event.type in HANDLERS
    values = {
        "id": event.id,
        "type": event.type,
        "created": event.created,
        "api_version": event.api_version,
        "livemode": event.livemode,
        "payload": event.payload,
        "received_at": now,
        "status": EventStatus.RECEIVED if handled else EventStatus.IGNORED,
        "attempts": 0,
        "next_attempt_at": now if handled else None,
    }
    with sessions.begin() as session:
        statement = _INSERT_ONCE[session.get_bind().dialect.name == "postgresql"]
        stored = session.execute(statement, values).first() is not None
    if not stored:
        EVENTS.labels(event.type, "duplicate").inc()
        return True
    EVENTS.labels(event.type, "received" if handled else "ignored").inc()
    return False
