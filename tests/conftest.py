"""Shared fixtures. Every test that touches the database runs on SQLite and on PostgreSQL.

PostgreSQL: `SEATSYNC_TEST_POSTGRES_URL` (default postgresql://postgres@127.0.0.1:5432/test).
Each test session migrates a schema of its own there; each test starts from empty tables.
When PostgreSQL is unreachable its tests are skipped — unless `SEATSYNC_REQUIRE_POSTGRES=1`
(as in CI), where that is an error.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import responses
import stripe
from flask.testing import FlaskClient
from sqlalchemy import Engine, text
from sqlalchemy.engine import make_url

from connector.adapters.database import make_engine, make_session_factory
from connector.adapters.migrate import upgrade
from connector.adapters.models import Base
from connector.adapters.stripe_port import StripeClientPort
from connector.app import create_app
from connector.config import Settings, StripeSettings
from connector.services.apikeys import Scope, create_key
from stripe_sandbox.double import StripeDouble
from stripe_sandbox.responses_adapter import install
from tests.helpers import Database, utc

POSTGRES_URL = os.environ.get(
    "SEATSYNC_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)
STRIPE_API_BASE = "https://api.stripe.test"
ALL_SCOPES = list(Scope)


@pytest.fixture(scope="session")
def _sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("sqlite") / "template.db"
    engine = make_engine(f"sqlite:///{path}")
    upgrade(engine)
    engine.dispose()
    return path


def new_postgres_schema(prefix: str) -> tuple[str, Callable[[], None]]:
    """A schema of its own on the test server: its URL (the schema rides in it, so the CLI
    and other processes reach it too) and how to drop it. Raises if the server is
    unreachable."""
    schema = f"{prefix}_{uuid.uuid4().hex[:10]}"

    def run(statement: str) -> None:
        admin = make_engine(POSTGRES_URL)
        try:
            with admin.begin() as connection:
                connection.execute(text(statement))
        finally:
            admin.dispose()

    run(f'CREATE SCHEMA "{schema}"')
    url = make_url(POSTGRES_URL).update_query_dict({"options": f"-csearch_path={schema}"})
    drop = f'DROP SCHEMA "{schema}" CASCADE'
    return url.render_as_string(hide_password=False), lambda: run(drop)


@pytest.fixture(scope="session")
def _postgres_schema() -> Iterator[Database]:
    try:
        url, drop = new_postgres_schema("seatsync_test")
    except Exception as error:  # unreachable server
        if os.environ.get("SEATSYNC_REQUIRE_POSTGRES") == "1":
            pytest.fail(f"PostgreSQL required but unreachable at {POSTGRES_URL}: {error}")
        pytest.skip(f"PostgreSQL unreachable at {POSTGRES_URL}")
    database = Database("postgresql", url)
    engine = database.engine()
    upgrade(engine)
    engine.dispose()
    yield database
    drop()


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    if request.param == "sqlite":
        template: Path = request.getfixturevalue("_sqlite_template")
        path = tmp_path / "seatsync.db"
        shutil.copy(template, path)
        yield Database("sqlite", f"sqlite:///{path}")
        return
    database: Database = request.getfixturevalue("_postgres_schema")
    engine = database.engine()
    tables = ", ".join(f'"{table.name}"' for table in reversed(Base.metadata.sorted_tables))
    with engine.begin() as connection:
        connection.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
    engine.dispose()
    yield database


@pytest.fixture
def engine(database: Database) -> Iterator[Engine]:
    engine = database.engine()
    yield engine
    engine.dispose()


@pytest.fixture
def double() -> StripeDouble:
    """Stripe, in memory, at 2026-03-15 10:30 UTC unless a test moves the clock."""
    return StripeDouble(now=int(utc(2026, 3, 15, 10, 30).timestamp()))


@pytest.fixture
def stripe_client(double: StripeDouble) -> Iterator[stripe.StripeClient]:
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        install(rsps, double, STRIPE_API_BASE)
        # Real servers the tests start on loopback (notice callbacks) are really called.
        rsps.add_passthru("http://127.0.0.1:")
        yield stripe.StripeClient(
            "sk_test_seatsync",
            stripe_version="2026-10-28.endive",
            http_client=stripe.RequestsClient(),
            base_addresses={"api": STRIPE_API_BASE},
        )


@pytest.fixture
def clock(double: StripeDouble) -> Callable[[], datetime]:
    """The connector's clock is Stripe's: tests move time with `double.advance_to`."""
    return lambda: datetime.fromtimestamp(double.now, UTC)


@pytest.fixture
def settings(database: Database) -> Settings:
    return Settings(
        database_url=database.url,
        stripe=StripeSettings(api_key="sk_test_seatsync", api_base=STRIPE_API_BASE),
    )


@pytest.fixture
def app(
    settings: Settings,
    engine: Engine,
    stripe_client: stripe.StripeClient,
    clock: Callable[[], datetime],
) -> Any:
    app = create_app(
        settings,
        engine=engine,
        stripe_port=StripeClientPort(stripe_client),
        clock=clock,
        validate_responses=True,
        run_jobs=False,
    )
    app.testing = True
    return app


@pytest.fixture
def client(app: Any) -> FlaskClient:
    client: FlaskClient = app.test_client()
    return client


@pytest.fixture
def make_key(engine: Engine) -> Callable[..., str]:
    def make(*scopes: Scope, name: str = "test-key") -> str:
        with make_session_factory(engine).begin() as session:
            return create_key(session, name, list(scopes or ALL_SCOPES), utc(2026, 1, 1)).secret

    return make


@pytest.fixture
def auth(make_key: Callable[..., str]) -> dict[str, str]:
    """Headers of a key with every scope."""
    return {"Authorization": f"Bearer {make_key()}"}


@pytest.fixture
def make_sync(
    engine: Engine, stripe_client: stripe.StripeClient, clock: Callable[[], datetime]
) -> Callable[..., Any]:
    """An outbox drain on the test database and the Stripe double (jitter fixed at zero)."""
    from connector.config import SyncSettings
    from sync.drain import OutboxDrain

    def make(worker_id: str = "worker-1", **settings: Any) -> OutboxDrain:
        return OutboxDrain(
            make_session_factory(engine),
            StripeClientPort(stripe_client),
            clock,
            SyncSettings(**{"max_requests_per_second": 1000, **settings}),
            worker_id,
            jitter=lambda: 0.0,
        )

    return make
