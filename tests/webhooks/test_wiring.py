"""How the app and the worker wire webhooks to the sync without either importing the other."""

from __future__ import annotations

from apscheduler.schedulers.background import BackgroundScheduler

from connector.cli import _jobs
from connector.config import Settings
from sync.worker import WEBHOOK_EVENTS_JOB, schedule


def test_the_worker_schedules_the_webhook_events_job(settings: Settings) -> None:
    jobs = _jobs(settings)
    scheduler = schedule(BackgroundScheduler(timezone="UTC"), jobs)
    job = scheduler.get_job(WEBHOOK_EVENTS_JOB)
    assert job is not None
    assert job.trigger.interval.total_seconds() == settings.sync.webhook_events_interval_seconds
