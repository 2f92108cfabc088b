"""Telling every process at once that an API key was revoked: PostgreSQL's LISTEN/NOTIFY.

Web workers keep the keys they verified in a cache (`connector.services.apikeys.KeyCache`).
A revocation is made elsewhere (the CLI, another machine, an operator's SQL), so the
database announces it: a trigger on `api_keys` (migration 0010) notifies this channel of
every UPDATE and DELETE of a key row, at the changing transaction's commit. Each web
worker listens there and forgets its keys. SQLite has no such channel: there the cache is
never trusted and keys are read per request.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from sqlalchemy import Engine

log = logging.getLogger(__name__)

# One channel per database: installations sharing a database (in schemas of their own)
# hear each other's revocations, which only costs them one extra read of their keys.
CHANNEL = "seatsync_api_keys"  # migration 0010 spells it too


class ListenerLost(Exception):
    """The listener's own heartbeat did not come back: the connection cannot be trusted."""


# A connection that stops answering fails within seconds, not at TCP's retransmission
# limit (about 15 minutes) during which the cache would stay trusted.
CONNECTION_OPTIONS = {
    "connect_timeout": 10,
    "keepalives": 1,
    "keepalives_idle": 5,
    "keepalives_interval": 2,
    "keepalives_count": 3,
    "tcp_user_timeout": 10_000,  # ms
}


class RevocationListener:
    """A daemon thread holding one connection of its own (outside the pool) that LISTENs on
    the channel. `on_listening` runs once the listener has heard its own first heartbeat
    (from then on nothing is missed), `on_revoked` with the key id of each announcement,
    `on_lost` when the connection fails or a heartbeat is not heard within
    `heartbeat_seconds` (a half-open connection; a pooler that does not deliver LISTEN). It
    then connects again every `retry_seconds` until it is stopped."""

    def __init__(
        self,
        engine: Engine,
        *,
        on_listening: Callable[[], None],
        on_revoked: Callable[[str], None],
        on_lost: Callable[[], None],
        retry_seconds: float = 1.0,
        poll_seconds: float = 1.0,
        heartbeat_seconds: float = 5.0,
    ) -> None:
        self._engine = engine
        self._on_listening, self._on_revoked, self._on_lost = on_listening, on_revoked, on_lost
        self._retry_seconds, self._poll_seconds = retry_seconds, poll_seconds
        self._heartbeat_seconds = heartbeat_seconds
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="key-revocations", daemon=True)
        self.backend_pid: int | None = None  # the PostgreSQL backend listening, when it is

    def start(self) -> RevocationListener:
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        self._stopping.set()
        self._thread.join(timeout)

    def _run(self) -> None:
        failing = False  # a warning when it goes down, not one a second while it stays down
        while not self._stopping.is_set():
            try:
                self._listen()
            except Exception as error:  # the server went away, a restart, a network fault
                if not failing:
                    log.warning("key revocations: not listening (%s); keys read per request", error)
                failing = True
            finally:
                self.backend_pid = None
                self._on_lost()
            self._stopping.wait(self._retry_seconds)

    def _listen(self) -> None:
        # A connection of its own, not the pool's: held for good, and closed here however it
        # ended (the pool would try to roll back a lost one, and log the failure).
        args, options = self._engine.dialect.create_connect_args(self._engine.url)
        connection: Any = self._engine.dialect.connect(*args, **{**CONNECTION_OPTIONS, **options})
        try:
            connection.autocommit = True  # LISTEN takes effect at once, not at a commit
            # Its own heartbeat goes round the server on a channel only it hears.
            own = f"{CHANNEL}_{connection.info.backend_pid}"
            connection.execute(f"LISTEN {CHANNEL}")
            connection.execute(f"LISTEN {own}")
            self.backend_pid = connection.info.backend_pid
            listening = False
            while not self._stopping.is_set():
                self._send_heartbeat(connection, own)
                heard, deadline = False, time.monotonic() + self._heartbeat_seconds
                while not self._stopping.is_set() and time.monotonic() < deadline:
                    wait = min(self._poll_seconds, max(deadline - time.monotonic(), 0.0))
                    for announcement in connection.notifies(timeout=wait):
                        if announcement.channel == own:
                            heard = True
                        else:
                            self._on_revoked(announcement.payload)
                    if heard and not listening:
                        self._on_listening()
                        listening = True
                if not heard and not self._stopping.is_set():
                    raise ListenerLost(f"no heartbeat in {self._heartbeat_seconds} s")
        finally:
            connection.close()

    def _send_heartbeat(self, connection: Any, channel: str) -> None:
        connection.execute("SELECT pg_notify(%s, '')", (channel,))
