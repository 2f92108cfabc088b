"""What the benchmarks share: a free port, a process run for the length of a block, a
throw-away PostgreSQL schema, waiting for a server to answer and for its workers to boot.

Each benchmark is run as a script (`python bench/<name>.py`): its folder then heads
sys.path, where `bench/webhooks.py` would hide the connector's `webhooks` package. Each
script therefore starts with `sys.path[0] = ROOT` (the repository) before importing this
module as `bench.common`.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import requests

DEFAULT_POSTGRES = "postgresql://postgres@127.0.0.1:5432/test"
ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent  # the virtualenv's commands: seatsync, stripe-sandbox


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_until_up(
    url: str,
    seconds: float = 30,
    proc: subprocess.Popen[bytes] | None = None,
    log: Path | None = None,
) -> None:
    """Until `url` answers; fails at once if `proc` (the server) exits, showing its `log`."""

    def ended(why: str) -> SystemExit:
        return SystemExit(why + (f":\n{log.read_text()[-2000:]}" if log else ""))

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise ended(f"{proc.args!r} exited")
        try:
            if requests.get(url, timeout=1).status_code < 500:
                return
        except requests.RequestException:
            pass
        time.sleep(0.1)
    raise ended(f"{url} did not come up")


def cpu_seconds(pids: list[int]) -> dict[int, float]:
    """Each process's CPU seconds so far (from /proc; a process gone meanwhile is left out)."""
    tick = os.sysconf("SC_CLK_TCK")
    seconds = {}
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        seconds[pid] = (int(fields[11]) + int(fields[12])) / tick  # utime, stime
    return seconds


def process_tree(pid: int) -> list[int]:
    """`pid` and its children (a gunicorn master and its workers)."""
    found = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
    return [pid, *(int(child) for child in found.split())]


def wait_until_booted(server: subprocess.Popen[bytes], workers: int, seconds: float = 120) -> None:
    """Until gunicorn's `workers` have all booted: the same processes twice running, each
    idle meanwhile (at most one clock tick of CPU in 0.3 s: a heartbeat may land on one).

    The first worker up answers the health check while the others still import; a load
    tool that connects then puts every keep-alive connection on that one worker, for the
    whole run, and it uses one core (the GIL). A master that exits (gunicorn stops when a
    worker fails to boot) fails this at once, not after `seconds`."""
    tick = 1 / os.sysconf("SC_CLK_TCK")
    deadline = time.monotonic() + seconds
    before: dict[int, float] = {}
    busy: dict[int, float] = {}
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"gunicorn {server.pid} exited (code {server.returncode})")
        now = cpu_seconds(process_tree(server.pid))
        busy = {pid: now[pid] - before.get(pid, 0.0) for pid in now}
        settled = len(now) == workers + 1 and now.keys() == before.keys()
        if settled and all(used <= tick + 1e-9 for used in busy.values()):
            return
        before = now
        time.sleep(0.3)
    raise SystemExit(
        f"gunicorn {server.pid}: {workers} workers did not settle in {seconds:.0f} s "
        f"(last 0.3 s, CPU seconds by process: {busy})"
    )


SERVE_WORKERS = 2  # gunicorn workers of `seatsync serve` in a benchmark, unless it says


def serve_command(port: int, workers: int = SERVE_WORKERS) -> list[str]:
    """`seatsync serve` (gunicorn with the connector's own options)."""
    return [str(BIN / "seatsync"), "serve", "--port", str(port), "--workers", str(workers)]


def serve_env(database_url: str, stripe_base: str, **more: str) -> dict[str, str]:
    """The connector's settings for a benchmark: no jobs in the web process, a test key."""
    return {
        "SEATSYNC_DATABASE_URL": database_url,
        "SEATSYNC_SYNC__RUN_IN_WEB": "false",
        "SEATSYNC_STRIPE__API_KEY": "sk_test_bench",
        "SEATSYNC_STRIPE__API_BASE": stripe_base,
        "SEATSYNC_LOG_LEVEL": "WARNING",
        **more,
    }


@contextmanager
def process(
    args: list[str], env: dict[str, str] | None = None, log: Path | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    """Run `args` (in a session of its own: gunicorn's workers go with it) while inside;
    its output goes to `log`, or nowhere."""
    with open(log or os.devnull, "wb") as out:
        proc = subprocess.Popen(
            args,
            env={**os.environ, **(env or {})},
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            yield proc
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()


@contextmanager
def throwaway_schema(database: str) -> Iterator[str]:
    """A PostgreSQL schema of its own, dropped afterwards; yields the URL that lands in it
    (the schema is in the URL, so every process opened with it does)."""
    from sqlalchemy import text
    from sqlalchemy.engine import make_url

    from connector.adapters.database import make_engine

    schema = f"bench_{uuid.uuid4().hex[:8]}"
    admin = make_engine(database)
    with admin.begin() as connection:
        connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    url = make_url(database).update_query_dict({"options": f"-csearch_path={schema}"})
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.begin() as connection:
            connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()
