"""Typed settings, loaded once at the edge and passed to `create_app(settings)` / the worker.

Sources, weakest first: defaults, the TOML file, `SEATSYNC_*` environment variables
(nested with a double underscore: `SEATSYNC_STRIPE__API_KEY`).
"""

from __future__ import annotations

import os
from contextvars import ContextVar
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

# The Stripe API version the connector is written against (STRIPE_NOTES.md). Pinned in code:
# a different version changes object shapes, so it is not a setting.
STRIPE_API_VERSION = "2026-10-28.endive"
DEFAULT_CONFIG_FILE = "seatsync.toml"
# The TOML file `load_settings` reads, handed to the settings source below.
_config_file: ContextVar[Path | None] = ContextVar("seatsync_config_file", default=None)


class StripeSettings(BaseModel):
    api_key: SecretStr = SecretStr("")
    api_base: str = "https://api.stripe.com"
    # Signing secrets of the webhook endpoint (whsec_...). Several while one is rolled: a
    # delivery signed with any of them is accepted. `webhook_secret` is one more, kept for
    # configurations written before there could be several.
    webhook_secrets: list[SecretStr] = Field(default_factory=list)
    webhook_secret: SecretStr = SecretStr("")
    # How old a delivery's signature may be (Stripe's default): refuses replayed requests.
    webhook_tolerance_seconds: int = Field(default=300, ge=1, le=3600)
    max_network_retries: int = Field(default=2, ge=0, le=10)
    timeout_seconds: int = Field(default=30, ge=1, le=300)

    def signing_secrets(self) -> tuple[str, ...]:
        """Every configured webhook secret, blanks left out."""
        found = [s.get_secret_value().strip() for s in [*self.webhook_secrets, self.webhook_secret]]
        return tuple(dict.fromkeys(secret for secret in found if secret))


class SyncSettings(BaseModel):
    # Run the sync jobs inside the web process (the single-machine default); set false when
    # `seatsync worker` processes run them.
    run_in_web: bool = True
    drain_interval_seconds: float = Field(default=2.0, gt=0)
    renewal_interval_seconds: float = Field(default=60.0, gt=0)
    reconcile_interval_seconds: float = Field(default=900.0, gt=0)
    # Repair drift found by reconcile (push the expected quantity without proration), or
    # only report it.
    repair_drift: bool = False
    # Stripe's account-wide request rate: 25/s in test mode, 100/s live. Per process.
    max_requests_per_second: float = Field(default=25.0, gt=0)
    # Stripe's per-subscription invoice limits.
    invoices_per_minute: int = Field(default=10, ge=1)
    invoices_per_day: int = Field(default=20, ge=1)
    # Stripe allows "a few hundred" quantity updates a subscription an hour.
    quantity_updates_per_hour: int = Field(default=200, ge=2)
    # How long a worker may hold a subscription before another may take it over.
    lease_seconds: int = Field(default=120, ge=5)
    # Due subscriptions one look at the outbox takes, the longest waiting first; keep it
    # above the threads of all workers together (those others are syncing count too).
    subscriptions_per_drain: int = Field(default=100, ge=1)
    # Subscriptions one worker syncs at once (threads; each under its own lease). Stripe
    # answers a write in ~300 ms, so one at a time would use a few requests a second.
    concurrency: int = Field(default=16, ge=1, le=256)
    # A drain goes on taking due subscriptions for up to this long before it yields.
    drain_budget_seconds: float = Field(default=30.0, gt=0)
    # Seconds between runs of the handlers of stored Stripe webhook events.
    webhook_events_interval_seconds: float = Field(default=1.0, gt=0)
    # Seconds between runs of the true-up job (once per cluster): true-ups that came due are
    # settled and their invoices made or retried.
    true_up_interval_seconds: float = Field(default=300.0, gt=0)
    # Seconds between deliveries of pending over-allocation notices (e-mails, callbacks).
    notices_interval_seconds: float = Field(default=10.0, gt=0)
    # Seconds between runs of the payments job: unfinished out-of-band payments and refund
    # debits finished, Stripe's collection resumed for invoices whose extension ran out.
    payments_interval_seconds: float = Field(default=60.0, gt=0)


class SmtpSettings(BaseModel):
    """The SMTP server over-allocation notices are e-mailed through. No host: none sent."""

    model_config = ConfigDict(populate_by_name=True)

    host: str = ""
    port: int = Field(default=587, ge=1, le=65535)
    starttls: bool = True
    username: str = ""
    password: SecretStr = SecretStr("")
    # `from` in the TOML file (a Python keyword, hence the alias).
    from_address: str = Field(default="seatsync@localhost", alias="from")
    timeout_seconds: float = Field(default=10.0, gt=0, le=120)


class NoticeDeliverySettings(BaseModel):
    # Seconds a notice callback URL has to answer.
    callback_timeout_seconds: float = Field(default=10.0, gt=0, le=120)


class ServerSettings(BaseModel):
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)


class DashboardSettings(BaseModel):
    """The ops dashboard at /ops/: its session cookie."""

    # Signs the session cookie. Empty: a random one is made at start, so sessions end when
    # the connector restarts (and every process of a deployment must share a set one).
    secret_key: SecretStr = SecretStr("")
    # Send the cookie over HTTPS only: set true wherever the dashboard is served over TLS.
    cookie_secure: bool = False
    # A sign-in lasts this long (the cookie expires, and an older one is refused).
    session_hours: float = Field(default=8.0, gt=0, le=24 * 30)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="SEATSYNC_", env_nested_delimiter="__", extra="forbid"
    )

    database_url: str = "sqlite:///var/seatsync.db"
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    # `json`: one JSON object a line, with request_id / event_id / subscription_id where
    # they apply (recommended in production); `text`: for people (the default, the demo's).
    log_format: Literal["text", "json"] = "text"
    # Largest quantity one request may buy or release: catches typos like 10000 for 10.
    max_quantity_per_request: int = Field(default=10_000, ge=1, le=10_000)
    stripe: StripeSettings = StripeSettings()
    server: ServerSettings = ServerSettings()
    sync: SyncSettings = SyncSettings()
    smtp: SmtpSettings = SmtpSettings()
    notices: NoticeDeliverySettings = NoticeDeliverySettings()
    dashboard: DashboardSettings = DashboardSettings()

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Strongest first: the environment, then arguments, then the TOML file.
        toml = TomlConfigSettingsSource(settings_cls, toml_file=_config_file.get())
        return (env_settings, init_settings, toml)


def load_settings(config_file: str | Path | None = None, **overrides: Any) -> Settings:
    """Read the TOML file (argument, `SEATSYNC_CONFIG`, or ./seatsync.toml if present)."""
    path = config_file or os.environ.get("SEATSYNC_CONFIG")
    if path is None and Path(DEFAULT_CONFIG_FILE).exists():
        path = DEFAULT_CONFIG_FILE
    if path is not None and not Path(path).is_file():
        raise FileNotFoundError(f"no config file at {path}")
    token = _config_file.set(Path(path) if path is not None else None)
    try:
        return Settings(**overrides)
    finally:
        _config_file.reset(token)
