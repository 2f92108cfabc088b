"""The ops dashboard in a real headless Chromium (Debian's `chromium` and `chromium-driver`,
driven by Selenium with the driver's path given: nothing is downloaded). The connector serves
on a free loopback port (werkzeug in a thread, over the test database and the Stripe
double); the browser signs in, reads a subscription's numbers, and retries a dead letter.
It leaves a screenshot of the subscription page in docs/dashboard.png (shown in the README).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import stripe
from flask.testing import FlaskClient
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.chrome.webdriver import WebDriver
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.ui import WebDriverWait
from sqlalchemy import Engine
from werkzeug.serving import make_server

from connector.adapters.database import make_session_factory
from connector.adapters.models import OutboxRecord
from connector.adapters.stripe_port import StripeClientPort
from connector.domain.states import OutboxStatus
from stripe_sandbox.double import StripeDouble
from tests.dashboard.conftest import make_dead_letter
from webhooks.processing import process_due_events
from webhooks.replay import replay_events

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "dashboard.png"

pytestmark = pytest.mark.skipif(
    not (CHROMIUM.is_file() and CHROMEDRIVER.is_file()),
    reason="no browser installed: the browser test needs Debian's chromium and chromium-driver "
    "(apt-get install -y chromium chromium-driver; .ci/run installs them)",
)


@pytest.fixture
def live_server(app: Any) -> Iterator[str]:
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    thread.join(timeout=5)


@pytest.fixture
def browser() -> Iterator[WebDriver]:
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for argument in (
        "--headless=new",
        "--no-sandbox",  # CI runs as root
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--window-size=1280,900",
        "--force-device-scale-factor=1",
        "--hide-scrollbars",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-default-apps",
    ):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(executable_path=str(CHROMEDRIVER)), options=options)
    driver.implicitly_wait(5)
    yield driver
    driver.quit()


def _take_screenshot(driver: WebDriver, path: Path) -> None:
    """The whole page: the viewport is made as tall as the document for the picture."""
    metrics = driver.execute_cdp_cmd("Page.getLayoutMetrics", {})
    height = min(int(metrics["cssContentSize"]["height"]), 4000)
    driver.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride",
        {"width": 1280, "height": height, "deviceScaleFactor": 1, "mobile": False},
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    driver.save_screenshot(str(path))
    driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})


@pytest.mark.parametrize("database", ["sqlite"], indirect=True)
def test_ops_sign_in_read_a_subscription_and_retry_its_dead_letter_in_chromium(
    app: Any,
    client: FlaskClient,
    auth: dict[str, str],
    stripe_client: stripe.StripeClient,
    double: StripeDouble,
    make_sync: Callable[..., Any],
    engine: Engine,
    ops_key: str,
    live_server: str,
    browser: WebDriver,
) -> None:
    started = time.monotonic()
    case = make_dead_letter(client, auth, stripe_client, double, make_sync)
    # Some goodwill credit in Stripe; then Stripe's events so far (invoices, the customer's
    # balance) stored and handled as the webhook job would.
    stripe_client.v1.customers.balance_transactions.create(
        str(case.scenario.stripe_sub.customer),
        {"amount": -5000, "currency": "usd", "description": "goodwill"},
    )
    sessions = make_session_factory(engine)
    now = datetime.fromtimestamp(double.now, UTC)
    replay_events(sessions, StripeClientPort(stripe_client), datetime(2025, 12, 1, tzinfo=UTC), now)
    process_due_events(sessions, app.extensions["seatsync_webhook_context"], now)

    browser.get(f"{live_server}/ops/subscriptions/{case.scenario.id}")
    assert "/ops/sign-in" in browser.current_url  # no page without a session
    browser.find_element(By.ID, "api_key").send_keys(ops_key)
    browser.find_element(By.ID, "sign-in").click()
    WebDriverWait(browser, 5).until(expected_conditions.url_contains("/ops/subscriptions/"))

    card = browser.find_element(By.CSS_SELECTOR, '[data-seat-type="users"]')

    def shown(name: str) -> str:
        return str(card.find_element(By.CSS_SELECTOR, f'[data-field="{name}"]').text)

    assert shown("licences") == "13"
    assert shown("included_in_plan") == "5"
    assert shown("additional_units") == "8"
    assert shown("billed_now") == "13"
    assert shown("billed_at_renewal") == "13"
    assert shown("stripe_quantity") == "12"
    assert shown("free_licences") == "5"
    assert "not in sync" in shown("in_sync")
    assert browser.find_elements(By.CSS_SELECTOR, "figure.chart svg polyline.licences")
    _take_screenshot(browser, SCREENSHOT)

    browser.find_element(By.LINK_TEXT, "Sync health").click()
    retry = browser.find_element(By.CSS_SELECTOR, f'button[data-retry="{case.outbox_id}"]')
    retry.click()
    WebDriverWait(browser, 5).until(
        expected_conditions.presence_of_element_located((By.ID, "no-dead-letters"))
    )
    assert "is sent to Stripe again" in browser.find_element(By.CSS_SELECTOR, ".flash.ok").text
    assert browser.find_element(By.CSS_SELECTOR, '[data-field="dead"]').text == "0"
    with sessions() as session:
        assert session.get_one(OutboxRecord, case.outbox_id).status == OutboxStatus.PENDING
    assert time.monotonic() - started < 20
