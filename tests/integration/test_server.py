"""The processes `seatsync serve` and `seatsync worker` run: what they do once started."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest
from click.testing import CliRunner

from connector import cli
from connector.config import Settings, SyncSettings
from connector.server import _Gunicorn, gunicorn_options


@pytest.fixture
def unfrozen() -> Iterator[None]:
    gc.unfreeze()
    yield
    gc.unfreeze()  # the rest of the suite runs with a collector that sees everything


def frozen(thing: object) -> bool:
    """Frozen objects sit in the permanent generation, which `gc.get_objects()` leaves out."""
    return gc.is_tracked(thing) and not any(o is thing for o in gc.get_objects())


def test_a_gunicorn_worker_leaves_its_app_out_of_garbage_collection(
    settings: Settings, unfrozen: None
) -> None:
    quiet = settings.model_copy(update={"sync": SyncSettings(run_in_web=False)})
    app = _Gunicorn(quiet, gunicorn_options(quiet)).load()
    assert frozen(app) and frozen(app.view_functions)
    made_after = [object()]  # a container: the collector tracks it (a dict of str it would not)
    assert gc.is_tracked(made_after) and not frozen(made_after)  # what requests make is collected


def test_the_sync_worker_freezes_its_jobs_before_it_starts_them(
    settings: Settings, unfrozen: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    started: list[Any] = []

    def run_foreground(jobs: Any) -> None:
        started.append((jobs, frozen(jobs), frozen(jobs.outbox_drain)))

    monkeypatch.setattr("sync.worker.run_foreground", run_foreground)
    result = CliRunner().invoke(
        cli.main, ["--database", settings.database_url, "worker"], catch_exceptions=False
    )
    assert result.exit_code == 0, result.output
    assert [(is_frozen, drain_frozen) for _, is_frozen, drain_frozen in started] == [(True, True)]


def test_gunicorn_forgets_a_dead_workers_metrics(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The `child_exit` hook, as gunicorn takes it (it checks the signature), passes the
    dead worker's pid on (`forget_dead_process` is tested in test_metrics)."""
    forgotten: list[int] = []
    monkeypatch.setattr("connector.server.forget_dead_process", forgotten.append)
    hook = _Gunicorn(settings, gunicorn_options(settings)).cfg.child_exit
    hook(None, SimpleNamespace(pid=4242))
    assert forgotten == [4242]
