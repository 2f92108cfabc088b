"""Reduced runs of bench/seat_api.py, bench/sync_throughput.py (PostgreSQL, as they are
measured) and bench/sync_burst.py (both databases), so they keep working: each completes,
prints its figures and loses nothing. Nothing here is timed."""

from __future__ import annotations

import ast
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import POSTGRES_URL
from tests.helpers import Database

BENCH = Path(__file__).resolve().parents[2] / "bench"


@pytest.fixture
def postgres(_postgres_schema: Database) -> str:
    """The server each benchmark makes its own throw-away schema on (skipped, or failed
    under SEATSYNC_REQUIRE_POSTGRES=1, when it is unreachable)."""
    return POSTGRES_URL


def run(script: str, *args: str) -> str:
    done = subprocess.run(
        [sys.executable, str(BENCH / script), *args],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_the_seat_api_benchmark_runs_both_servers_without_an_error(postgres: str) -> None:
    if shutil.which("wrk") is None:
        pytest.skip("wrk is not installed (Debian package wrk; .ci/run installs it)")
    out = run(
        "seat_api.py", "--seconds", "1", "--rounds", "1", "--subscriptions", "2",
        "--database", postgres,
    )  # fmt: skip
    for case in ("buy one licence", "plan view (GET)"):
        assert re.search(rf"^{re.escape(case)} +\d+ +[\d.]+/[\d.]+ +\d+ ", out, re.M), out
    assert "non-2xx" not in out, out
    assert "busiest worker's share" in out
    # each round's p99 with wrk's connections over the workers ("?" where `ss` is missing)
    assert re.search(r"^buy one licence +seatsync [\d.]+ \[(\d+(/\d+)*|\?)\]", out, re.M), out


def test_the_sync_benchmark_drains_a_burst_exactly(postgres: str) -> None:
    out = run(
        "sync_throughput.py", "--subscriptions", "12", "--latency-ms", "10",
        "--concurrency", "4", "--database", postgres,
    )  # fmt: skip
    assert "12 subscriptions, 12 changes done, 0 retrying, 0 dead" in out, out
    assert re.search(r"Stripe requests: 24 = [\d.]+/s of the 100/s allowed", out), out


def test_the_sync_benchmark_sustained_loses_no_change(postgres: str) -> None:
    out = run(
        "sync_throughput.py", "--subscriptions", "6", "--latency-ms", "10",
        "--concurrency", "4", "--sustained-seconds", "2", "--changes-per-second", "5",
        "--database", postgres,
    )  # fmt: skip
    reached = re.search(r"(\d+) reached Stripe, (\d+) not", out)
    assert reached is not None, out
    assert int(reached.group(1)) > 0 and reached.group(2) == "0", out
    assert re.search(r"(?<!\d)0 syncs failed", out), out


def test_the_burst_benchmark_is_accepted_whole_and_coalesced(database: Database) -> None:
    out = run(
        "sync_burst.py", "--subscriptions", "4", "--changes", "30", "--lag-samples", "1",
        "--database", database.url,
    )  # fmt: skip
    tally = re.search(r"changes over 1 day\(s\): (\{.*\})", out)
    assert tally is not None, out
    assert all(outcome.endswith(" 200") for outcome in ast.literal_eval(tally.group(1))), out
    writes = re.search(r"Stripe writes: (\d+) for 30 accepted changes", out)
    assert writes is not None and int(writes.group(1)) < 30, out  # coalesced per subscription
