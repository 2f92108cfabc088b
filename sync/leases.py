"""Leases in the database: one holder at a time, across processes and machines.

A lease is claimed with one atomic UPDATE (or INSERT for a new name) and expires on its
own, so a worker that dies frees what it held. Works the same on SQLite and PostgreSQL.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import (
    Executable,
    Update,
    bindparam,
    func,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from connector.adapters.database import AUTOCOMMIT, SessionFactory, engine_of
from connector.adapters.models import LEASES_TABLE, Lease

RELEASED = datetime(1970, 1, 1, tzinfo=UTC)  # the expiry a released lease is given

# Core statements on the table, built once (the values go as parameters): a lease is
# claimed and released once a subscription sync, and building a statement cost more than
# its round trip.
_C = LEASES_TABLE.c
_NAMED = _C.name == bindparam("lease")
_HELD = _C.owner == bindparam("holder")
_FREE = _C.until <= bindparam("now")
_TAKEN: dict[str, Any] = {"owner": bindparam("new_owner"), "until": bindparam("new_until")}
_CLAIM = update(LEASES_TABLE).where(_NAMED, _FREE).values(_TAKEN)
_CLAIM_PERIODIC = (
    update(LEASES_TABLE)
    .where(_NAMED, _FREE, or_(_C.last_run_at.is_(None), _C.last_run_at <= bindparam("ran_by")))
    .values(_TAKEN)
)
_CREATE = insert(LEASES_TABLE)
_RENEW = update(LEASES_TABLE).where(_NAMED, _HELD).values(until=bindparam("new_until"))
# A released lease loses its owner too: its old holder can no longer renew it.
_RELEASE = update(LEASES_TABLE).where(_NAMED, _HELD).values(until=RELEASED, owner="")
_RAN = (
    update(LEASES_TABLE)
    .where(_NAMED, _HELD)
    .values(
        until=bindparam("ran_at"), last_run_at=bindparam("ran_at"), last_result=bindparam("result")
    )
)


def _alone(sessions: SessionFactory, statement: Executable, params: dict[str, object]) -> int:
    """Run one statement as its own transaction (autocommit); the rows it changed. A claim,
    renewal or release is one UPDATE, atomic by itself: without BEGIN and COMMIT it costs one
    round trip, not three (on SQLite it takes the write lock for that statement only)."""
    with engine_of(sessions).connect().execution_options(isolation_level=AUTOCOMMIT) as connection:
        return connection.execute(statement, params).rowcount


def _take(
    sessions: SessionFactory, taking: Update, params: dict[str, object], owner: str, until: datetime
) -> bool:
    """Take the lease named in `params` with `taking` (an UPDATE where it is free), or
    create it; False when another holds it."""
    if _alone(sessions, taking, {**params, "new_owner": owner, "new_until": until}):
        return True
    try:
        _alone(sessions, _CREATE, {"name": params["lease"], "owner": owner, "until": until})
        return True
    except IntegrityError:  # it exists and is not free
        return False


def claim(sessions: SessionFactory, name: str, owner: str, now: datetime, ttl: timedelta) -> bool:
    """Claim a free or expired lease. Owners are unique per claim, so a claim never joins
    another holder's — not even one of the same process."""
    return _take(sessions, _CLAIM, {"lease": name, "now": now}, owner, now + ttl)


def renew(sessions: SessionFactory, name: str, owner: str, now: datetime, ttl: timedelta) -> bool:
    """Extend a lease we hold; False if it is no longer ours (it expired and was taken)."""
    return bool(_alone(sessions, _RENEW, _renewal(name, owner, now, ttl)))


def renew_in(session: Session, name: str, owner: str, now: datetime, ttl: timedelta) -> bool:
    """`renew` within the caller's transaction (with the write it guards)."""
    kept = session.execute(_RENEW, _renewal(name, owner, now, ttl))
    return bool(kept.rowcount)  # type: ignore[attr-defined]


def _renewal(name: str, owner: str, now: datetime, ttl: timedelta) -> dict[str, object]:
    return {"lease": name, "holder": owner, "new_until": now + ttl}


def release(
    sessions: SessionFactory,
    name: str,
    owner: str,
    result: str | None = None,
    now: datetime | None = None,
) -> None:
    """Give the lease up; a periodic job records when it last ran and what it found. The
    row stays (expired), so the next claim is one UPDATE."""
    held: dict[str, object] = {"lease": name, "holder": owner}
    if result is None:
        _alone(sessions, _RELEASE, held)
    else:
        _alone(sessions, _RAN, {**held, "ran_at": now, "result": result})


def claim_periodic(
    sessions: SessionFactory,
    name: str,
    owner: str,
    now: datetime,
    every: timedelta,
    ttl: timedelta,
) -> bool:
    """Claim a cluster-wide job if nobody holds it and it last ran `every` ago or more."""
    params = {"lease": name, "now": now, "ran_by": now - every}
    return _take(sessions, _CLAIM_PERIODIC, params, owner, now + ttl)


WORKER_PREFIX = "worker:"


def live_workers(sessions: SessionFactory, worker_id: str, now: datetime, ttl: timedelta) -> int:
    """Say this worker is alive (a lease `worker:<id>` that lapses if it dies) and count the
    workers alive now, this one included: they share Stripe's account-wide rate."""
    name = f"{WORKER_PREFIX}{worker_id}"
    if not renew(sessions, name, worker_id, now, ttl):
        claim(sessions, name, worker_id, now, ttl)
    with sessions() as session:
        alive = session.scalar(
            select(func.count())
            .select_from(Lease)
            .where(Lease.name.startswith(WORKER_PREFIX), Lease.until > now)
        )
    return max(1, alive or 0)
