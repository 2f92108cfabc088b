"""Delivering notices: e-mail over SMTP (smtplib) and signed HTTP callbacks (requests).

A callback is signed like Stripe's webhooks, with the contract's own secret:
`Seatsync-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "{t}.{raw body}">`. Every
failure raises `DeliveryFailed`; the caller decides when to try again.
"""

from __future__ import annotations

import hashlib
import hmac
import smtplib
import ssl
from collections.abc import Callable
from datetime import datetime
from email.message import EmailMessage
from typing import Protocol

import requests

from connector.config import SmtpSettings

SIGNATURE_HEADER = "Seatsync-Signature"
NOTICE_ID_HEADER = "Seatsync-Notice-Id"


class DeliveryFailed(Exception):
    """The notice did not reach its target; it may be tried again."""


class NoticeChannels(Protocol):
    def send_email(self, to: str, subject: str, text: str, message_id: str) -> None: ...

    def post_callback(self, url: str, body: bytes, secret: str, notice_id: str) -> None: ...


def signature(secret: str, timestamp: int, body: bytes) -> str:
    """The header value for `body` signed at `timestamp` (unix seconds)."""
    signed = f"{timestamp}.".encode() + body
    digest = hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


class SmtpAndHttpChannels:
    """The real channels: the SMTP server of the `[smtp]` settings, and `requests`."""

    def __init__(
        self,
        smtp: SmtpSettings,
        clock: Callable[[], datetime],
        callback_timeout_seconds: float = 10.0,
        http: requests.Session | None = None,
    ) -> None:
        self._smtp = smtp
        self._clock = clock
        self._timeout = callback_timeout_seconds
        self._http = http or requests.Session()

    def send_email(self, to: str, subject: str, text: str, message_id: str) -> None:
        settings = self._smtp
        if not settings.host:
            raise DeliveryFailed("no SMTP server is configured ([smtp] host)")
        message = EmailMessage()
        message["From"] = settings.from_address
        message["To"] = to
        message["Subject"] = subject
        message["Message-ID"] = message_id
        message.set_content(text)
        try:
            with smtplib.SMTP(
                settings.host, settings.port, timeout=settings.timeout_seconds
            ) as server:
                if settings.starttls:
                    server.starttls(context=ssl.create_default_context())
                if settings.username:
                    server.login(settings.username, settings.password.get_secret_value())
                server.send_message(message)
        except (OSError, smtplib.SMTPException) as error:
            raise DeliveryFailed(f"SMTP {settings.host}:{settings.port}: {error}") from error

    def post_callback(self, url: str, body: bytes, secret: str, notice_id: str) -> None:
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "seatsync-notices",
            NOTICE_ID_HEADER: notice_id,
            SIGNATURE_HEADER: signature(secret, int(self._clock().timestamp()), body),
        }
        try:
            response = self._http.post(
                url, data=body, headers=headers, timeout=self._timeout, allow_redirects=False
            )
        except requests.RequestException as error:
            raise DeliveryFailed(f"callback {url}: {error}") from error
        if not 200 <= response.status_code < 300:
            raise DeliveryFailed(f"callback {url} answered {response.status_code}")
