"""What every part of the drain shares: the run's context, its report, and its failures.

Kept apart so that the drain, the outbox transitions, the journal of Stripe calls and the
renewal handling import it and not each other in a cycle.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TypeVar

import stripe
from sqlalchemy.orm import Session

from connector.adapters.database import SessionFactory, read_sessions_like
from connector.adapters.installation import KeyPrefix
from connector.adapters.stripe_errors import StripeErrorKind, classify
from connector.adapters.stripe_port import StripePort
from connector.config import SyncSettings
from sync import leases
from sync.ratelimit import TokenBucket

T = TypeVar("T")


@dataclass
class DrainReport:
    subscriptions: int = 0
    updates_sent: int = 0
    records_done: int = 0
    records_retrying: int = 0
    records_dead: int = 0
    skipped_locked: int = 0
    errors: list[str] = field(default_factory=list)

    def merge(self, other: DrainReport) -> None:
        """Add a subscription's report (each thread of a drain keeps its own)."""
        for name in (
            "subscriptions",
            "updates_sent",
            "records_done",
            "records_retrying",
            "records_dead",
            "skipped_locked",
        ):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.errors.extend(other.errors)


class StripeCallFailed(Exception):
    def __init__(self, kind: StripeErrorKind, message: str, http_status: int | None) -> None:
        super().__init__(message)
        self.kind = kind
        self.http_status = http_status


class LeaseLost(Exception):
    """Another worker took the subscription over (ours expired): stop writing at once."""


@dataclass
class Run:
    """One subscription's sync under one lease claim."""

    subscription_id: str
    stripe_subscription_id: str
    stripe_customer_id: str
    currency: str
    lease: str
    token: str
    report: DrainReport


@dataclass
class SyncContext:
    """The database, Stripe, the clock and the settings one worker syncs with."""

    sessions: SessionFactory
    port: StripePort
    clock: Callable[[], datetime]
    settings: SyncSettings
    worker_id: str
    jitter: Callable[[], float] = random.random
    rate: TokenBucket = field(init=False)
    # Sessions for what only reads (each statement on its own: no BEGIN and ROLLBACK round
    # trips, on SQLite no write lock); every change goes through `sessions.begin()`.
    reads: SessionFactory = field(init=False)
    # Namespaces every idempotency key sent to Stripe (see connector.adapters.installation).
    key_prefix: KeyPrefix = field(init=False)

    def __post_init__(self) -> None:
        self.rate = TokenBucket(self.settings.max_requests_per_second)
        self.reads = read_sessions_like(self.sessions)
        self.key_prefix = KeyPrefix(self.sessions)

    @property
    def lease_ttl(self) -> timedelta:
        return timedelta(seconds=self.settings.lease_seconds)

    def call(self, call: Callable[[], T]) -> T:
        """One Stripe request, paced by the account rate; Stripe errors classified."""
        self.rate.acquire()
        try:
            return call()
        except stripe.StripeError as error:
            raise StripeCallFailed(classify(error), describe(error), error.http_status) from error

    def hold_lease(self, run: Run, session: Session | None = None) -> None:
        """Extend our lease before a write; refuse to write if it is no longer ours. With
        `session`, in its transaction: the write's journal is kept only if the lease was."""
        now, ttl = self.clock(), self.lease_ttl
        if session is not None:
            held = leases.renew_in(session, run.lease, run.token, now, ttl)
        else:
            held = leases.renew(self.sessions, run.lease, run.token, now, ttl)
        if not held:
            raise LeaseLost(run.lease)


def describe(error: stripe.StripeError) -> str:
    status = error.http_status or "no response"
    code = f" {error.code}" if error.code else ""
    return f"Stripe {status}{code}: {error.user_message or str(error) or type(error).__name__}"
