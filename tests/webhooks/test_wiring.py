"""How the app and the worker wire webhooks to the sync without either importing the other."""

from __future__ import annotations

import dataclasses
from typing import Any

from apscheduler.schedulers.background import BackgroundScheduler
from flask.testing import FlaskClient

from connector.cli import _jobs
from connector.config import Settings
from sync.worker import WEBHOOK_EVENTS_JOB, schedule
from tests.webhooks.support import event_body, post, sign
from webhooks.receiver import EXTENSION


def test_the_worker_schedules_the_webhook_events_job(settings: Settings) -> None:
    jobs = _jobs(settings)
    scheduler = schedule(BackgroundScheduler(timezone="UTC"), jobs)
    job = scheduler.get_job(WEBHOOK_EVENTS_JOB)
    assert job is not None
    assert job.trigger.interval.total_seconds() == settings.sync.webhook_events_interval_seconds


def test_a_newly_stored_event_wakes_the_processing_and_a_duplicate_does_not(
    app: Any, client: FlaskClient
) -> None:
    woken: list[bool] = []
    app.extensions[EXTENSION] = dataclasses.replace(
        app.extensions[EXTENSION], on_stored=lambda: woken.append(True)
    )
    body = event_body("evt_wake")
    post(client, body, sign(body))
    post(client, body, sign(body))
    assert woken == [True]
