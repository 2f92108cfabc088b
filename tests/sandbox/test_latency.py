"""``latency_ms``: every API answer waits, without holding the double's lock (served for real
by werkzeug on loopback, so the requests truly overlap)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from werkzeug.serving import make_server

from stripe_sandbox.double import StripeDouble
from stripe_sandbox.server import create_sandbox_app
from tests.sandbox.helpers import ts

AUTH = {"Authorization": "Bearer sk_test_123"}


@pytest.fixture
def base_url() -> Iterator[str]:
    app = create_sandbox_app(StripeDouble(now=ts(2026, 1, 1)), None, latency_ms=200)
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join(timeout=5)


def test_ten_concurrent_requests_wait_side_by_side(base_url: str) -> None:
    def create(n: int) -> tuple[int, float]:
        started = time.monotonic()
        resp = requests.post(
            f"{base_url}/v1/customers", data={"name": f"c{n}"}, headers=AUTH, timeout=10
        )
        return resp.status_code, time.monotonic() - started

    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=10) as pool:
        results = list(pool.map(create, range(10)))
    elapsed = time.monotonic() - started

    assert [status for status, _ in results] == [200] * 10
    assert min(took for _, took in results) >= 0.2  # each one waited
    assert elapsed < 1.0  # together, not one after another (that would be 2 s)
    listed = requests.get(f"{base_url}/v1/customers?limit=100", headers=AUTH, timeout=10)
    assert len(listed.json()["data"]) == 10


def test_sandbox_controls_answer_at_once(base_url: str) -> None:
    started = time.monotonic()
    assert requests.get(f"{base_url}/_sandbox/state", timeout=10).status_code == 200
    assert time.monotonic() - started < 0.15


def test_negative_latency_is_refused() -> None:
    with pytest.raises(ValueError, match="latency_ms"):
        create_sandbox_app(StripeDouble(now=ts(2026, 1, 1)), None, latency_ms=-5)
