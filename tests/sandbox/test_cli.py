"""The sandbox's commands hand their options to the server and the demo unchanged."""

from __future__ import annotations

from typing import Any

import pytest
from click.testing import CliRunner

import stripe_sandbox.demo
import stripe_sandbox.server
from stripe_sandbox.cli import demo, serve_sandbox


def test_stripe_sandbox_serves_the_double(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[dict[str, Any]] = []
    monkeypatch.setattr(stripe_sandbox.server, "serve", lambda **kw: calls.append(kw))

    result = CliRunner().invoke(
        serve_sandbox, ["--port", "12345", "--webhook-url", "http://127.0.0.1:8000/webhooks"]
    )

    assert result.exit_code == 0, result.output
    assert calls == [
        {
            "host": "127.0.0.1",
            "port": 12345,
            "webhook_url": "http://127.0.0.1:8000/webhooks",
            "latency_ms": 0,
        }
    ]


def test_stripe_sandbox_latency_option(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[dict[str, Any]] = []
    monkeypatch.setattr(stripe_sandbox.server, "serve", lambda **kw: calls.append(kw))

    assert CliRunner().invoke(serve_sandbox, ["--latency-ms", "250"]).exit_code == 0
    assert calls[0]["latency_ms"] == 250
    refused = CliRunner().invoke(serve_sandbox, ["--latency-ms", "-1"])
    assert refused.exit_code != 0 and len(calls) == 1


def test_seatsync_demo_runs_the_demo(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[dict[str, Any]] = []
    monkeypatch.setattr(stripe_sandbox.demo, "run_demo", lambda **kw: calls.append(kw))

    result = CliRunner().invoke(demo, ["--port", "8077", "--sandbox-port", "12177"])

    assert result.exit_code == 0, result.output
    assert calls == [{"port": 8077, "sandbox_port": 12177, "database_url": "sqlite:///var/demo.db"}]
