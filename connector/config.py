"""Typed settings, loaded once at the edge and passed to `create_app(settings)` / the worker.

Sources, weakest first: defaults, the TOML file, `SEATSYNC_*` environment variables
(nested with a double underscore: `SEATSYNC_STRIPE__API_KEY`).
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, SecretStr
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

# The Stripe API version the connector is written against (STRIPE_NOTES.md). Pinned in code:
# a different version changes object shapes, so it is not a setting.
STRIPE_API_VERSION = "2026-10-28.endive"
DEFAULT_CONFIG_FILE = "seatsync.toml"


class StripeSettings(BaseModel):
    api_key: SecretStr = SecretStr("")
    api_base: str = "https://api.stripe.com"
    webhook_secret: SecretStr = SecretStr("")
    max_network_retries: int = Field(default=2, ge=0, le=10)
    timeout_seconds: int = Field(default=30, ge=1, le=300)


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
    subscriptions_per_drain: int = Field(default=100, ge=1)


class ServerSettings(BaseModel):
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="SEATSYNC_", env_nested_delimiter="__", extra="forbid"
    )

    database_url: str = "sqlite:///var/seatsync.db"
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    # Largest quantity one request may buy or release: catches typos like 10000 for 10.
    max_quantity_per_request: int = Field(default=10_000, ge=1)
    stripe: StripeSettings = StripeSettings()
    server: ServerSettings = ServerSettings()
    sync: SyncSettings = SyncSettings()

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # The TOML file arrives as init arguments; the environment overrides it.
        return (env_settings, init_settings)


def load_settings(config_file: str | Path | None = None, **overrides: Any) -> Settings:
    """Read the TOML file (argument, `SEATSYNC_CONFIG`, or ./seatsync.toml if present)."""
    path = config_file or os.environ.get("SEATSYNC_CONFIG")
    if path is None and Path(DEFAULT_CONFIG_FILE).exists():
        path = DEFAULT_CONFIG_FILE
    values: dict[str, Any] = {}
    if path is not None:
        with Path(path).open("rb") as handle:
            values = tomllib.load(handle)
    values.update(overrides)
    return Settings(**values)
