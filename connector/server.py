"""Serving the API with gunicorn, configured from code (no separate config file)."""

from __future__ import annotations

from typing import Any

from gunicorn.app.base import BaseApplication

from connector.app import create_app
from connector.config import Settings


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
        return create_app(self._settings)


def run_gunicorn(settings: Settings, workers: int = 2) -> None:
    bind = f"{settings.server.host}:{settings.server.port}"
    _Gunicorn(settings, {"bind": bind, "workers": workers, "accesslog": "-"}).run()
