"""`bench/webhooks.py` stays runnable: a tiny run (SQLite, a few dozen deliveries) completes
and prints both endpoints' figures and their ratio. Nothing is timed here."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "bench" / "webhooks.py"


def test_webhook_benchmark_runs_and_prints_the_ratio(tmp_path: Path) -> None:
    done = subprocess.run(
        [
            sys.executable,
            str(BENCH),
            "--sqlite",
            "--events",
            "40",
            "--rounds",
            "1",
            "--threads",
            "4",
        ],
        capture_output=True,
        text=True,
        timeout=180,
        cwd=tmp_path,  # no seatsync.toml of the repository is read
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "receiver (seatsync serve):" in done.stdout
    assert "bare Flask (SDK + 1 insert):" in done.stdout
    assert "ratio:" in done.stdout and "failures 0" in done.stdout
