"""Catching up from Stripe's event list (after an outage, or a secret misconfigured): each
listed event goes through the same store step as a delivery, so one already received is a
no-op, and then through the same processing."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

from connector.adapters.database import SessionFactory
from connector.adapters.stripe_port import StripePort
from webhooks.store import InvalidEvent, parse_event, store_event

log = logging.getLogger(__name__)


@dataclass
class ReplayReport:
    listed: int = 0
    stored: int = 0
    duplicates: int = 0
    invalid: int = 0


def replay_events(
    sessions: SessionFactory, port: StripePort, since: datetime, now: datetime
) -> ReplayReport:
    """Store every event Stripe lists from `since` (it keeps 30 days) not stored yet."""
    report = ReplayReport()
    for payload in port.list_events(since):
        report.listed += 1
        try:
            event = parse_event(payload)
        except InvalidEvent as error:
            log.warning("Stripe listed an event the connector cannot store: %s", error)
            report.invalid += 1
            continue
        if store_event(sessions, event, now):
            report.duplicates += 1
        else:
            report.stored += 1
    return report
