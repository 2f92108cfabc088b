"""The connector, in process, on a throw-away SQLite database: its own HTTP API (through
Flask's test client, with an API key made in that database) and its own sync, both on the
test clocks' time."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from flask.testing import FlaskClient

from connector.adapters.database import make_engine, make_session_factory
from connector.adapters.migrate import upgrade
from connector.adapters.stripe_port import StripePort
from connector.app import create_app
from connector.config import Settings
from connector.selfcheck.stripe_side import SelfCheckError
from connector.services.apikeys import Scope, create_key
from sync.context import DrainReport
from sync.worker import Jobs

SEAT_TYPE = "users"


class InProcessConnector:
    def __init__(
        self,
        settings: Settings,
        port: StripePort,
        clock: Callable[[], datetime],
        workdir: Path,
    ) -> None:
        self.engine = make_engine(f"sqlite:///{workdir / 'selfcheck.db'}")
        upgrade(self.engine)
        app = create_app(
            settings, engine=self.engine, stripe_port=port, clock=clock, run_jobs=False
        )
        app.testing = True
        self.client: FlaskClient = app.test_client()
        sessions = make_session_factory(self.engine)
        with sessions.begin() as session:
            secret = create_key(session, "selfcheck", list(Scope), clock()).secret
        self.auth = {"Authorization": f"Bearer {secret}"}
        self.jobs = Jobs.build(sessions, port, clock, settings.sync, owner="selfcheck")

    def close(self) -> None:
        self.engine.dispose()

    def _call(self, method: str, path: str, body: Any = None, charging: bool = False) -> Any:
        headers = dict(self.auth)
        if charging:
            headers["Idempotency-Key"] = f"selfcheck-{uuid.uuid4()}"
        response = self.client.open(path, method=method, json=body, headers=headers)
        if response.status_code >= 300:
            raise SelfCheckError(
                f"the connector answered {method} {path} with {response.status_code}: "
                f"{response.get_data(as_text=True)[:500]}"
            )
        return response.json

    def register(
        self, stripe_subscription_id: str, stripe_price_id: str, floor: int, licences: int | None
    ) -> dict[str, Any]:
        """Link the Stripe subscription as a contract with one seat type, `manual` policy."""
        seat_type: dict[str, Any] = {
            "name": SEAT_TYPE,
            "stripe_price_id": stripe_price_id,
            "policy": "manual",
            "floor": floor,
        }
        if licences is not None:
            seat_type["licences"] = licences
        plan: dict[str, Any] = self._call(
            "POST",
            "/v1/subscriptions",
            {"stripe_subscription_id": stripe_subscription_id, "seat_types": [seat_type]},
        )
        return plan

    def plan(self, subscription_id: str) -> dict[str, Any]:
        found: dict[str, Any] = self._call("GET", f"/v1/subscriptions/{subscription_id}")
        return found

    def quote(self, subscription_id: str, quantity: int) -> dict[str, Any]:
        found: dict[str, Any] = self._call(
            "POST",
            f"/v1/subscriptions/{subscription_id}/seats/{SEAT_TYPE}/quote",
            {"quantity": quantity},
        )
        return found

    def buy(self, subscription_id: str, quantity: int) -> dict[str, Any]:
        found: dict[str, Any] = self._call(
            "POST",
            f"/v1/subscriptions/{subscription_id}/seats/{SEAT_TYPE}/licenses",
            {"quantity": quantity},
            charging=True,
        )
        return found

    def release(self, subscription_id: str, quantity: int) -> dict[str, Any]:
        found: dict[str, Any] = self._call(
            "POST",
            f"/v1/subscriptions/{subscription_id}/seats/{SEAT_TYPE}/licenses/release",
            {"quantity": quantity},
        )
        return found

    def ledger_entry(self, subscription_id: str, entry_id: int) -> dict[str, Any]:
        page = self._call("GET", f"/v1/subscriptions/{subscription_id}/ledger?limit=20")
        for entry in page["data"]:
            if entry["id"] == entry_id:
                found: dict[str, Any] = entry
                return found
        raise SelfCheckError(f"ledger entry {entry_id} of {subscription_id} not found")

    def drain(self) -> DrainReport:
        """Send what is pending to Stripe now; a failure is the check's finding."""
        report = self.jobs.drain()
        if report.errors or report.records_dead or report.records_retrying:
            raise SelfCheckError(
                f"the sync could not send the change to Stripe: dead {report.records_dead}, "
                f"retrying {report.records_retrying}, errors {report.errors}"
            )
        return report
