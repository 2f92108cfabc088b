"""bench/common.py's wait for gunicorn's workers."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from bench.common import wait_until_booted


def test_waiting_for_workers_fails_at_once_when_the_master_has_exited() -> None:
    # gunicorn's master exits with 3 when a worker fails to boot; the wait used to see
    # an unreaped master with no workers and give up only after its 120 s.
    master = subprocess.Popen([sys.executable, "-c", "raise SystemExit(3)"])
    master.wait()
    started = time.monotonic()
    with pytest.raises(SystemExit, match=r"exited \(code 3\)"):
        wait_until_booted(master, workers=2, seconds=60)
    assert time.monotonic() - started < 5


def test_waiting_for_workers_returns_when_all_are_up_and_idle() -> None:
    code = (
        "import subprocess, sys, time\n"
        "kids = [subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(30)'])"
        " for _ in range(2)]\n"
        "time.sleep(30)\n"
    )
    master = subprocess.Popen([sys.executable, "-c", code])
    try:
        wait_until_booted(master, workers=2, seconds=20)
        assert master.poll() is None
    finally:
        subprocess.run(["pkill", "-P", str(master.pid)])
        master.kill()
        master.wait()
