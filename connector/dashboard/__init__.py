"""The ops dashboard at /ops/: server-rendered pages over the API's read models, for billing
ops. It reads like the API (plan view, ledger, sync status) and acts through the services
(retry a dead letter) or through callables the composition root gives it (replay a Stripe
event): it never imports the sync or the webhooks. No script and no asset from elsewhere.
"""

from __future__ import annotations

import secrets
from datetime import timedelta

from flask import Flask, Request
from flask.sessions import SecureCookieSession, SecureCookieSessionInterface
from flask_wtf.csrf import CSRFProtect
from pydantic import SecretStr

from connector.config import Settings
from connector.dashboard import formatting
from connector.dashboard.views import DASHBOARD_PATH, EXTENSION, ReplayEvent, bp


def with_secret_key(settings: Settings) -> Settings:
    """The settings with a session key: the configured one, else a random one made now.
    Made once before a server forks its workers, so they all accept each other's cookies."""
    if settings.dashboard.secret_key.get_secret_value():
        return settings
    dashboard = settings.dashboard.model_copy(
        update={"secret_key": SecretStr(secrets.token_urlsafe(32))}
    )
    return settings.model_copy(update={"dashboard": dashboard})


class DashboardSessions(SecureCookieSessionInterface):
    """Only the dashboard has sessions (its cookie is sent to /ops only). Flask would open
    one for every request, building a signing serializer each time: 2% of a purchase's
    CPU. Elsewhere the session is Flask's null session, which refuses to be written."""

    def open_session(self, app: Flask, request: Request) -> SecureCookieSession | None:
        if request.path == DASHBOARD_PATH or request.path.startswith(f"{DASHBOARD_PATH}/"):
            return super().open_session(app, request)
        return self.make_null_session(app)


def install_dashboard(app: Flask, settings: Settings, replay_event: ReplayEvent) -> None:
    """Mount the dashboard on the app: its session cookie, CSRF protection, the blueprint."""
    dashboard = with_secret_key(settings).dashboard
    app.config.update(
        SECRET_KEY=dashboard.secret_key.get_secret_value(),
        SESSION_COOKIE_NAME="seatsync_ops",
        SESSION_COOKIE_PATH=DASHBOARD_PATH,  # never sent to the API or the webhook receiver
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=dashboard.cookie_secure,
        PERMANENT_SESSION_LIFETIME=timedelta(hours=dashboard.session_hours),
        # CSRF is checked by the dashboard's own POSTs only (the API authenticates every
        # request with a bearer key, and Stripe signs its webhooks); a token lasts as long as
        # the session it belongs to.
        WTF_CSRF_CHECK_DEFAULT=False,
        WTF_CSRF_TIME_LIMIT=None,
    )
    app.session_interface = DashboardSessions()
    CSRFProtect(app)
    app.extensions[EXTENSION] = replay_event
    app.jinja_env.filters.update(formatting.FILTERS)
    app.register_blueprint(bp)


__all__ = ["install_dashboard", "with_secret_key"]
