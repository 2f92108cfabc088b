"""Every Prometheus family the connector exposes at `/metrics`, defined here once.

Two kinds:
- counters, histograms and one gauge of what this process did or does (Stripe calls, sync
  lag, webhook events, true-ups, HTTP requests, the API-key cache's listener):
  prometheus-client keeps them per process. Under gunicorn each worker answers with its
  own, unless PROMETHEUS_MULTIPROC_DIR is set (see `scrape`);
- gauges of what the database holds (outbox depth and oldest age, dead letters, open drift):
  computed at scrape time by `DatabaseCollector`, so every process answers the same.
"""

from __future__ import annotations

import functools
import inspect
import logging
import os
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime
from typing import Any, TypeVar

import stripe
from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram, Metric
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import func, select

from connector.adapters.database import SessionFactory
from connector.adapters.models import Drift, OutboxRecord
from connector.adapters.stripe_errors import classify
from connector.domain.states import OutboxStatus

log = logging.getLogger(__name__)

# Seconds from one second to a day: the sync's lag (a drain every 2 s; backoffs up to hours).
_LAG_BUCKETS = (0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 4 * 3600, 86400)
_HTTP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)

STRIPE_CALLS = Counter(
    "seatsync_stripe_calls_total",
    "Requests to Stripe by the port's operation (retrieve_subscription, update_quantity, ...) "
    "and outcome: ok, or the error's kind (retryable, not_found, rejected)",
    ["operation", "outcome"],
)
SYNC_LAG = Histogram(
    "seatsync_sync_lag_seconds",
    "Seconds from a seat change to Stripe accepting the update that carries it",
    buckets=_LAG_BUCKETS,
)
SYNC_SUBSCRIPTION_FAILURES = Counter(
    "seatsync_sync_subscription_failures_total", "Subscriptions whose sync failed unexpectedly"
)
WEBHOOK_EVENTS = Counter(
    "seatsync_webhook_events_total",
    "Stripe events by type and what became of them: received, ignored (no handler), "
    "duplicate, refused (type unknown), handled, failed, given_up",
    ["type", "outcome"],
)
TRUE_UP_RUNS = Counter(
    "seatsync_true_up_runs_total",
    "True-up invoicing attempts by outcome: invoiced, retrying, dead",
    ["outcome"],
)
for _outcome_name in ("invoiced", "retrying", "dead"):  # shown at 0 before the first true-up
    TRUE_UP_RUNS.labels(_outcome_name)
HTTP_REQUESTS = Counter(
    "seatsync_http_requests_total",
    "HTTP requests by method, route (the URL rule, e.g. /v1/subscriptions/<id>) and status",
    ["method", "route", "status"],
)
HTTP_DURATION = Histogram(
    "seatsync_http_request_duration_seconds",
    "Seconds spent answering an HTTP request, by method and route",
    ["method", "route"],
    buckets=_HTTP_BUCKETS,
)

API_KEY_CACHE_LISTENING = Gauge(
    "seatsync_api_key_cache_listening",
    "1 while this web worker hears API-key revocations (LISTEN), and so keeps the keys it "
    "verified; 0 while it reads each request's key: its listener's connection is down, or "
    "the database is SQLite. In multiprocess mode the live workers' sum: the number listening",
    # A sum, not a minimum: the gunicorn master and `seatsync worker` processes hold a 0.
    multiprocess_mode="livesum",
)

# --- Stripe calls, counted at the port ---------------------------------------------------

C = TypeVar("C", bound=type)


def _outcome(error: BaseException | None) -> str:
    if error is None:
        return "ok"
    if isinstance(error, stripe.StripeError):
        return classify(error).value
    return "error"


def _counted(name: str, method: Callable[..., Any]) -> Callable[..., Any]:
    if inspect.isgeneratorfunction(method):  # lists: the calls happen while paging

        @functools.wraps(method)
        def paging(*args: Any, **kwargs: Any) -> Iterator[Any]:
            try:
                yield from method(*args, **kwargs)
            except Exception as error:
                STRIPE_CALLS.labels(name, _outcome(error)).inc()
                raise
            STRIPE_CALLS.labels(name, "ok").inc()

        return paging

    @functools.wraps(method)
    def call(*args: Any, **kwargs: Any) -> Any:
        try:
            result = method(*args, **kwargs)
        except Exception as error:
            STRIPE_CALLS.labels(name, _outcome(error)).inc()
            raise
        STRIPE_CALLS.labels(name, "ok").inc()
        return result

    return call


def count_stripe_calls(cls: C) -> C:
    """Class decorator for a Stripe port: each public method counts its calls in
    `seatsync_stripe_calls_total`, labelled by the method's name and the outcome."""
    for name, member in list(vars(cls).items()):
        if not name.startswith("_") and inspect.isfunction(member):
            setattr(cls, name, _counted(name, member))
    return cls


# --- the database's gauges, at scrape time -----------------------------------------------


class DatabaseCollector:
    """Outbox depth and age, dead letters and open drift, read from the database at each
    scrape (a few indexed counts): the same answer from every process."""

    def __init__(self, sessions: SessionFactory, clock: Callable[[], datetime]) -> None:
        self._sessions = sessions
        self._clock = clock

    def collect(self) -> Iterable[Metric]:
        try:
            with self._sessions() as session:
                rows = session.execute(
                    select(OutboxRecord.status, func.count(), func.min(OutboxRecord.changed_at))
                    .where(OutboxRecord.status.in_([OutboxStatus.PENDING, OutboxStatus.DEAD]))
                    .group_by(OutboxRecord.status)
                ).all()
                drift = session.scalar(
                    select(func.count()).select_from(Drift).where(Drift.resolved_at.is_(None))
                )
        except Exception as error:  # a scrape never fails on the database: the rest is shown
            log.warning("metrics: the database could not be read: %s", error)
            return []
        by_status = {status: (count, oldest) for status, count, oldest in rows}
        pending, oldest = by_status.get(OutboxStatus.PENDING, (0, None))
        dead, _ = by_status.get(OutboxStatus.DEAD, (0, None))
        age = max(0.0, (self._clock() - oldest).total_seconds()) if oldest else 0.0
        return [
            _gauge(
                "seatsync_outbox_pending_records",
                "Outbox records waiting to reach Stripe (the database's, all processes)",
                pending,
            ),
            _gauge(
                "seatsync_outbox_oldest_pending_age_seconds",
                "Age of the oldest pending outbox record, from its change (0: none pending)",
                age,
            ),
            _gauge(
                "seatsync_outbox_dead_records",
                "Dead-lettered outbox records: Stripe refused them, ops must act",
                dead,
            ),
            _gauge(
                "seatsync_drift_open_records",
                "Open drift between the connector and Stripe found by reconcile",
                drift or 0,
            ),
        ]


def _gauge(name: str, documentation: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, documentation, value=value)


def _process_metrics() -> Collector:
    """This process's counters — or, with PROMETHEUS_MULTIPROC_DIR (set before start, an
    empty directory shared by the gunicorn workers), every worker's, summed."""
    if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        return REGISTRY
    from prometheus_client import multiprocess

    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    return registry


def forget_dead_process(pid: int, path: str | None = None) -> None:
    """In multiprocess mode, take a dead process's live gauges out of the sum (gunicorn's
    `child_exit`: prometheus-client keeps a process's files until it is told)."""
    path = path or os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if path:
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid, path)  # type: ignore[no-untyped-call]


class ScrapeCollector:
    """What one app's `/metrics` shows: the process's families, then the database's."""

    def __init__(self, sessions: SessionFactory, clock: Callable[[], datetime]) -> None:
        self._database = DatabaseCollector(sessions, clock)
        self._process = _process_metrics()

    def collect(self) -> Iterable[Metric]:
        yield from self._process.collect()
        yield from self._database.collect()
