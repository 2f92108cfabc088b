"""Serving the API with gunicorn, configured from code (no separate config file)."""

from __future__ import annotations

import gc
from typing import Any

from gunicorn.app.base import BaseApplication

from connector.adapters.metrics import forget_dead_process
from connector.app import REQUEST_THREADS, create_app, watch_key_revocations
from connector.config import Settings
from connector.dashboard import with_secret_key
from connector.observability import gunicorn_log_config


class _Gunicorn(BaseApplication):  # type: ignore[misc]
    def __init__(self, settings: Settings, options: dict[str, Any]) -> None:
        self._settings = settings
        self._options = options
        super().__init__()

    def load_config(self) -> None:
        for key, value in self._options.items():
            self.cfg.set(key, value)

    def load(self) -> Any:
        # Each worker builds its own app (and engine) after the fork.
        app = create_app(self._settings)
        watch_key_revocations(app)
        freeze_start_up_heap()
        return app


def freeze_start_up_heap() -> None:
    """Exempt what start-up built (modules, the app, SQLAlchemy's mappers: about 145,000
    objects) from the collector. A full collection walked them all, 85 ms on an idle core
    and 200-400 ms under load, holding every thread of the process meanwhile; frozen, it
    walks only what requests and syncs made since. Start-up's own garbage goes first."""
    gc.collect()
    gc.freeze()


def gunicorn_options(settings: Settings, workers: int = 2) -> dict[str, Any]:
    """Threaded workers: a client that announces more body than it sends holds one thread
    until the timeout, not a whole worker process (as a sync worker would, for 30 s)."""
    options: dict[str, Any] = {
        "bind": f"{settings.server.host}:{settings.server.port}",
        "workers": workers,
        "worker_class": "gthread",
        "threads": REQUEST_THREADS,
        "timeout": 30,
        "keepalive": 5,
        "accesslog": "-",
        "child_exit": _forget_dead_worker,
    }
    if settings.log_format == "json":  # gunicorn's own lines as JSON too
        options["logconfig_dict"] = gunicorn_log_config(settings.log_level, settings.log_format)
    return options


def _forget_dead_worker(_arbiter: Any, worker: Any) -> None:
    forget_dead_process(worker.pid)


def run_gunicorn(settings: Settings, workers: int = 2) -> None:
    # The dashboard's session key is made once, before the fork: every worker accepts it.
    settings = with_secret_key(settings)
    _Gunicorn(settings, gunicorn_options(settings, workers)).run()
