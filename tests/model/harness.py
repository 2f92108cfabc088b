"""The world one model example runs in: a fresh database, a fresh Stripe double and the
real connector (Flask test client, outbox drain), plus readers of what Stripe holds.

Each Hypothesis example builds its own world (`WorldFactory`), so examples never see each
other's subscriptions, dead letters or clock.
"""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import responses
import stripe
from flask.testing import FlaskClient
from sqlalchemy import Engine, event, text
from sqlalchemy.engine import make_url

from connector.adapters.database import make_engine, make_session_factory
from connector.adapters.models import Base
from connector.adapters.stripe_port import StripeClientPort
from connector.app import create_app
from connector.config import Settings, StripeSettings, SyncSettings
from connector.services.apikeys import Scope, create_key
from stripe_sandbox.double import StripeDouble
from stripe_sandbox.responses_adapter import install
from sync.drain import OutboxDrain
from tests.helpers import Database, utc

STRIPE_API_BASE = "https://api.stripe.test"


class CrashAfterStripe(BaseException):
    """The worker dies right after Stripe applied its write: nothing catches it."""


class CrashBeforeStripe(BaseException):
    """The worker dies after journalling a write, before it left."""


@dataclass(frozen=True)
class Line:
    """One amount Stripe holds for a subscription: an invoice line or a pending item."""

    price: str | None
    amount: int
    proration: bool
    period_start: int
    period_end: int
    where: str  # "first", "renewal", "immediate" (update/manual invoice) or "pending"


def _no_fsync(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA synchronous=OFF")
    cursor.close()


def _without_commit_flush(url: str) -> str:
    """PostgreSQL: commit without waiting for the WAL flush (durability is not under test)."""
    parsed = make_url(url)
    options = parsed.query.get("options", "")
    assert isinstance(options, str)
    options = f"{options} -csynchronous_commit=off".strip()
    return parsed.update_query_dict({"options": options}).render_as_string(hide_password=False)


class World:
    """One example's connector, database and Stripe."""

    def __init__(self, database: Database, url: str, start: int, cleanup: Callable[[], None]):
        self.database = database
        self._cleanup = cleanup
        self.engine: Engine = make_engine(url)
        if database.backend == "sqlite":  # durability is not under test: skip the fsyncs
            event.listen(self.engine, "connect", _no_fsync)
        self.double = StripeDouble(now=start)
        self.rsps = responses.RequestsMock(assert_all_requests_are_fired=False)
        self.rsps.start()
        install(self.rsps, self.double, STRIPE_API_BASE)
        self.stripe = stripe.StripeClient(
            "sk_test_seatsync",
            stripe_version="2026-10-28.endive",
            http_client=stripe.RequestsClient(),
            base_addresses={"api": STRIPE_API_BASE},
        )
        self.settings = Settings(
            database_url=url,
            stripe=StripeSettings(api_key="sk_test_seatsync", api_base=STRIPE_API_BASE),
            sync=SyncSettings(max_requests_per_second=1000, run_in_web=False),
        )
        app = create_app(
            self.settings,
            engine=self.engine,
            stripe_port=StripeClientPort(self.stripe),
            clock=self.clock,
            validate_responses=True,
            run_jobs=False,
        )
        app.testing = True
        self.client: FlaskClient = app.test_client()
        with make_session_factory(self.engine).begin() as session:
            secret = create_key(session, "model", list(Scope), utc(2026, 1, 1)).secret
        self.auth = {"Authorization": f"Bearer {secret}"}
        self.sync = self.make_drain("model-worker")

    def clock(self) -> datetime:
        return datetime.fromtimestamp(self.double.now, UTC)

    def make_drain(self, worker_id: str) -> OutboxDrain:
        """A drain with a Stripe port of its own (so a test may break just this one)."""
        return OutboxDrain(
            make_session_factory(self.engine),
            StripeClientPort(self.stripe),
            self.clock,
            self.settings.sync.model_copy(),
            worker_id,
            jitter=lambda: 0.0,
        )

    def close(self) -> None:
        try:
            self.rsps.stop()
            self.rsps.reset()
        finally:
            self.engine.dispose()
            self._cleanup()

    # --- the connector's API --------------------------------------------------------------

    def call(
        self,
        method: str,
        path: str,
        body: dict[str, Any] | None = None,
        *,
        key: bool | str = False,
    ) -> tuple[int, dict[str, Any]]:
        """One request; `key`: an Idempotency-Key (True: a fresh one)."""
        headers = dict(self.auth)
        if key:
            headers["Idempotency-Key"] = key if isinstance(key, str) else f"model-{uuid.uuid4()}"
        response = self.client.open(path, method=method, json=body, headers=headers)
        payload: dict[str, Any] = response.get_json(silent=True) or {}
        return response.status_code, payload

    # --- what Stripe holds ------------------------------------------------------------------

    def lines(self, stripe_subscription_id: str) -> list[Line]:
        books = self.double.state.books
        out: list[Line] = []
        for invoice in books.invoices.values():
            if invoice.subscription != stripe_subscription_id or invoice.status == "void":
                continue
            where = {
                "subscription_create": "first",
                "subscription_cycle": "renewal",
            }.get(invoice.billing_reason, "immediate")
            out += [
                self._line(li.price, li.amount, li.proration, li.invoice_item, where, li)
                for li in invoice.lines
            ]
        for item in books.invoice_items.values():
            if item.invoice is None and item.subscription == stripe_subscription_id:
                out.append(
                    self._line(item.price, item.amount, item.proration, item.id, "pending", item)
                )
        return out

    def _line(
        self,
        price: str | None,
        amount: int,
        proration: bool,
        invoice_item_id: str | None,
        where: str,
        period: Any,
    ) -> Line:
        """A connector's one-off line has no price; its metadata names the subscription item
        (the seat type) it is for. A waiver credits a written-off proration: it counts
        where that proration counts."""
        books = self.double.state.books
        item = books.invoice_items.get(invoice_item_id or "")
        metadata = item.metadata if item is not None else {}
        corrected = metadata.get("seatsync_subscription_item")
        if price is None and corrected in books.items:
            price = books.items[corrected].price
        waiver = "seatsync_waives_outbox" in metadata
        return Line(
            price, amount, proration or waiver, period.period_start, period.period_end, where
        )

    def quantities(self, stripe_subscription_id: str) -> dict[str, int]:
        """Stripe's quantity per price."""
        books = self.double.state.books
        subscription = books.subscriptions[stripe_subscription_id]
        return {books.items[i].price: books.items[i].quantity for i in subscription.items}

    def in_use_kept_and_counted(self) -> list[tuple[str, int, int]]:
        """Per seat type: the licences in use its row keeps, and the holders taking one."""
        with self.engine.connect() as connection:
            rows = connection.execute(
                text(
                    "SELECT name, in_use, (SELECT count(*) FROM holders WHERE "
                    "holders.seat_type_id = seat_types.id AND holders.occupies_licence) "
                    "FROM seat_types"
                )
            ).all()
        return [(str(name), int(kept), int(counted)) for name, kept, counted in rows]

    def seat_type_ids(self) -> dict[int, str]:
        with self.engine.connect() as connection:
            rows = connection.execute(text("SELECT id, name FROM seat_types")).all()
        return {int(row[0]): str(row[1]) for row in rows}


class WorldFactory:
    """Builds a fresh world per example on the test's database backend."""

    def __init__(self, database: Database, workdir: Path, sqlite_template: Path | None) -> None:
        self.database = database
        self.workdir = workdir
        self.template = sqlite_template
        self.built = 0

    def __call__(self, start: int) -> World:
        self.built += 1
        if self.database.backend == "sqlite":
            assert self.template is not None
            path = self.workdir / f"model-{self.built}.db"
            shutil.copy(self.template, path)
            return World(self.database, f"sqlite:///{path}", start, lambda: path.unlink())
        engine = self.database.engine()
        with engine.begin() as connection:  # DELETE: far quicker than TRUNCATE on small tables
            for table in reversed(Base.metadata.sorted_tables):
                connection.execute(table.delete())
        engine.dispose()
        url = _without_commit_flush(self.database.url)
        return World(self.database, url, start, lambda: None)
