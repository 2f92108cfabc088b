"""The scheduler: outbox drain, renewals, reconcile, true-ups and notices as APScheduler jobs.

`seatsync worker` runs them in the foreground; the web process can run them in the
background (setting `sync.run_in_web`). Several workers may run against one PostgreSQL:
subscription leases serialize Stripe writes per subscription, and the reconcile runs once
per cluster per interval (a job lease).
"""

from __future__ import annotations

import json
import logging
import os
import socket
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TypeVar

from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.schedulers.base import BaseScheduler
from apscheduler.schedulers.blocking import BlockingScheduler

from connector.adapters.database import SessionFactory
from connector.adapters.models import RECONCILE_JOB, RENEWALS_JOB
from connector.adapters.stripe_port import StripePort
from connector.config import SyncSettings
from connector.services import true_up
from connector.services.payment_jobs import PaymentJobsReport, run_payment_jobs
from sync import leases
from sync.context import DrainReport
from sync.drain import OutboxDrain
from sync.reconcile import ReconcileReport, reconcile, reconcile_one
from sync.renewals import process_renewals

log = logging.getLogger(__name__)
R = TypeVar("R")


def worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


@dataclass
class Jobs:
    sessions: SessionFactory
    port: StripePort
    clock: Callable[[], datetime]
    settings: SyncSettings
    outbox_drain: OutboxDrain
    # Runs the handlers of stored Stripe webhook events; set by the composition root
    # (webhooks and sync never import each other). None: no webhook job.
    process_webhooks: Callable[[], object] | None = None
    # Delivers pending over-allocation notices; set by the composition root, which has the
    # SMTP settings. None: no notice job.
    deliver_notices: Callable[[], object] | None = None

    @classmethod
    def build(
        cls,
        sessions: SessionFactory,
        port: StripePort,
        clock: Callable[[], datetime],
        settings: SyncSettings,
        owner: str | None = None,
    ) -> Jobs:
        drain = OutboxDrain(sessions, port, clock, settings, owner or worker_id())
        return cls(sessions, port, clock, settings, drain)

    def drain(self) -> DrainReport:
        return self.outbox_drain.drain()

    def renewals(self) -> int | None:
        """Once per cluster per interval, like the reconcile."""
        return self._once_per_cluster(
            RENEWALS_JOB,
            self.settings.renewal_interval_seconds,
            lambda: process_renewals(self.sessions, self.port, self.clock),
            str,
        )

    def reconcile(self, force: bool = False) -> ReconcileReport | None:
        """Once per cluster per interval; `force` runs it now (tests, ops)."""
        return self._once_per_cluster(
            RECONCILE_JOB,
            0 if force else self.settings.reconcile_interval_seconds,
            lambda: reconcile(self.sessions, self.port, self.clock, self.settings.repair_drift),
            lambda report: report.as_json(),
        )

    def true_ups(self, force: bool = False) -> true_up.RunReport | None:
        """Settle the true-ups that came due and invoice them: once per cluster per
        interval (each true-up is also claimed, so a second runner could not invoice it
        twice); `force` runs it now."""
        return self._once_per_cluster(
            TRUE_UPS_JOB,
            0 if force else self.settings.true_up_interval_seconds,
            lambda: true_up.run_due(self.sessions, self.port, self.clock),
            lambda report: report.as_json(),
        )

    def payments(self) -> PaymentJobsReport:
        """Finish unfinished out-of-band payments and refund debits; resume Stripe's
        collection of invoices whose extended term ran out. Safe on every worker at once:
        each write carries its request's idempotency key, each change a row lock."""
        return run_payment_jobs(
            self.sessions, self.port, self.clock, self.outbox_drain.ctx.key_prefix
        )

    def _once_per_cluster(
        self,
        name: str,
        every_seconds: float,
        job: Callable[[], R],
        describe: Callable[[R], str],
    ) -> R | None:
        """Run `job` if no worker of the cluster ran it in the last `every_seconds`."""
        owner = f"{self.outbox_drain.worker_id}:{uuid.uuid4().hex[:8]}"
        ttl = timedelta(seconds=max(self.settings.lease_seconds, 600))
        every = timedelta(seconds=every_seconds)
        if not leases.claim_periodic(self.sessions, name, owner, self.clock(), every, ttl):
            return None
        result: R | None = None
        try:
            result = job()
        finally:
            outcome = json.dumps({"error": "failed"}) if result is None else describe(result)
            leases.release(self.sessions, name, owner, outcome, self.clock())
        return result

    def resync(self, subscription_id: str) -> None:
        """Ops asked: reconcile this one subscription now — repairing its quantities, as
        asked — then send what is pending."""
        reconcile_one(self.sessions, self.port, self.clock, True, subscription_id)
        self.outbox_drain.sync_subscription(subscription_id, DrainReport())

    def sync_now(self, subscription_id: str) -> None:
        """Stripe says this subscription changed (a webhook): sync it now — adopting a
        renewal, dead-lettering what a cancelled one cannot take, sending what is pending —
        then compare it with Stripe (drift recorded, repaired if `repair_drift`). Raises when
        that could not be done now, so the event is tried again later."""
        report = DrainReport()
        self.outbox_drain.sync_subscription(subscription_id, report)
        if report.skipped_locked:
            raise RuntimeError(f"{subscription_id} is being synced by another worker")
        if report.errors:
            raise RuntimeError("; ".join(report.errors))
        reconcile_one(
            self.sessions, self.port, self.clock, self.settings.repair_drift, subscription_id
        )


WEBHOOK_EVENTS_JOB = "webhook_events"
NOTICES_JOB = "notices"
TRUE_UPS_JOB = "job:true_ups"  # the cluster-wide lease's name


def _guarded(name: str, job: Callable[[], object]) -> Callable[[], None]:
    def run() -> None:
        try:
            job()
        except Exception:  # a job's failure is logged; the next run tries again
            log.exception("job %s failed", name)

    return run


def schedule(scheduler: BaseScheduler, jobs: Jobs) -> BaseScheduler:
    settings = jobs.settings
    start = datetime.now(UTC)  # first runs at once, then every interval
    for name, job, seconds in (
        ("drain", jobs.drain, settings.drain_interval_seconds),
        ("renewals", jobs.renewals, settings.renewal_interval_seconds),
        ("reconcile", jobs.reconcile, min(60.0, settings.reconcile_interval_seconds)),
        ("true_ups", jobs.true_ups, min(60.0, settings.true_up_interval_seconds)),
        ("payments", jobs.payments, settings.payments_interval_seconds),
    ):
        scheduler.add_job(
            _guarded(name, job),
            "interval",
            seconds=seconds,
            id=name,
            max_instances=1,
            coalesce=True,
            next_run_time=start,
        )
    if jobs.deliver_notices is not None:
        scheduler.add_job(
            _guarded(NOTICES_JOB, jobs.deliver_notices),
            "interval",
            seconds=settings.notices_interval_seconds,
            id=NOTICES_JOB,
            max_instances=1,
            coalesce=True,
            next_run_time=start,
        )
    if jobs.process_webhooks is not None:
        scheduler.add_job(
            _guarded(WEBHOOK_EVENTS_JOB, jobs.process_webhooks),
            "interval",
            seconds=settings.webhook_events_interval_seconds,
            id=WEBHOOK_EVENTS_JOB,
            max_instances=1,
            coalesce=True,
            next_run_time=start,
        )
    return scheduler


def run_foreground(jobs: Jobs) -> None:
    log.info("seatsync worker %s started", jobs.outbox_drain.worker_id)
    schedule(BlockingScheduler(timezone="UTC"), jobs).start()


def start_background(jobs: Jobs) -> BackgroundScheduler:
    scheduler = BackgroundScheduler(timezone="UTC", daemon=True)
    schedule(scheduler, jobs)
    scheduler.start()
    return scheduler
