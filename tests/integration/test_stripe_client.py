"""The connector's Stripe client honours the environment's proxy settings, read once when it
is made (reading them on every request cost a quarter of a call's CPU)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from connector.adapters.stripe_port import make_stripe_client
from connector.config import StripeSettings

STRIPE = "http://stripe.invalid"  # never resolved: only a proxy can reach it


class _Recorder(BaseHTTPRequestHandler):
    """Answers every GET like Stripe would, and notes the request line's target."""

    seen: list[str]

    def do_GET(self) -> None:
        self.seen.append(self.path)
        body = json.dumps({"id": "sub_1", "object": "subscription"}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[tuple[str, list[str]]]:
    seen: list[str] = []
    handler = type("Handler", (_Recorder,), {"seen": seen})
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", seen
    httpd.shutdown()
    httpd.server_close()


def _retrieve(api_base: str) -> str:
    client = make_stripe_client(StripeSettings(api_key="sk_test_proxy", api_base=api_base))
    return str(client.raw_request("get", "/v1/subscriptions/sub_1").body)


def test_requests_go_through_the_proxy_the_environment_names(
    server: tuple[str, list[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    proxy, seen = server
    monkeypatch.setenv("HTTP_PROXY", proxy)
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    client = make_stripe_client(StripeSettings(api_key="sk_test_proxy", api_base=STRIPE))
    monkeypatch.delenv("HTTP_PROXY")  # read once, when the client was made
    assert "sub_1" in str(client.raw_request("get", "/v1/subscriptions/sub_1").body)
    assert seen == [f"{STRIPE}/v1/subscriptions/sub_1"]  # the absolute form: a proxy's


def test_no_proxy_for_a_host_it_excludes(
    server: tuple[str, list[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    stripe_itself, seen = server
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")  # nothing listens there
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    assert "sub_1" in _retrieve(stripe_itself)
    assert seen == ["/v1/subscriptions/sub_1"]  # straight to the server
