"""Real processes for reliability tests: the Stripe sandbox (`stripe-sandbox`) and the
connector under gunicorn (`seatsync serve`, configured through SEATSYNC_* variables), each
on a free loopback port, stopped (by their own process id) when the test ends."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import requests

BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _wait(url: str, process: subprocess.Popen[bytes], log: Path, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{url} exited early:\n{log.read_text()[-3000:]}")
        try:
            if requests.get(url, timeout=2).status_code < 500:
                return
        except requests.RequestException:  # not listening yet, or still starting
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer in {timeout} s:\n{log.read_text()[-3000:]}")


@contextmanager
def _running(
    command: list[str], ready_url: str, log: Path, env: Mapping[str, str], cwd: Path
) -> Iterator[None]:
    with log.open("wb") as out:
        # Its own process group: gunicorn's workers are stopped with their master.
        process = subprocess.Popen(
            command,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=dict(env),
            cwd=cwd,
            start_new_session=True,
        )
        try:
            _wait(ready_url, process, log)
            yield
        finally:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
                try:
                    process.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    os.killpg(process.pid, signal.SIGKILL)
                    process.wait()


@contextmanager
def stripe_sandbox(workdir: Path) -> Iterator[str]:
    """The fake Stripe over HTTP (no webhook forwarding); yields its base address."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    command = [str(BIN / "stripe-sandbox"), "--port", str(port), "--log-level", "warning"]
    with _running(command, f"{base}/_sandbox/state", workdir / "sandbox.log", os.environ, workdir):
        yield base


def connector_env(
    database_url: str, stripe_base: str, webhook_secret: str, port: int, **extra: str
) -> dict[str, str]:
    """Settings of a connector process, as `seatsync serve` reads them."""
    return {
        **os.environ,
        "SEATSYNC_DATABASE_URL": database_url,
        "SEATSYNC_SERVER__HOST": "127.0.0.1",
        "SEATSYNC_SERVER__PORT": str(port),
        "SEATSYNC_STRIPE__API_KEY": "sk_test_reliability",
        "SEATSYNC_STRIPE__API_BASE": stripe_base,
        "SEATSYNC_STRIPE__WEBHOOK_SECRETS": f'["{webhook_secret}"]',
        "SEATSYNC_LOG_LEVEL": "WARNING",
        **extra,
    }


@contextmanager
def seatsync_serve(workdir: Path, env: Mapping[str, str], workers: int = 2) -> Iterator[str]:
    """`seatsync serve` (gunicorn); yields its base address. Runs in `workdir`, so no
    seatsync.toml of the repository is read."""
    base = f"http://127.0.0.1:{env['SEATSYNC_SERVER__PORT']}"
    command = [str(BIN / "seatsync"), "serve", "--workers", str(workers)]
    with _running(command, f"{base}/healthz", workdir / "seatsync.log", env, workdir):
        yield base
