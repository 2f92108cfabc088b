"""Wire a :class:`StripeDouble` into ``responses`` so stripe-python talks to it.

Part of ``stripe_sandbox``, a test and demo tool: never used with real money.
Use with ``stripe.StripeClient(..., http_client=stripe.RequestsClient(),
base_addresses={"api": api_base})`` inside a ``responses.RequestsMock``: every
request to ``api_base`` is answered by the double, so tests exercise the real
SDK (encoding, retries, error classes) against a stateful Stripe.
"""

from __future__ import annotations

import json
import re
from urllib.parse import urlsplit

import requests
import responses

from stripe_sandbox.double import StripeDouble

_METHODS = ("GET", "POST", "DELETE", "PUT", "PATCH")


def install(
    rsps: responses.RequestsMock,
    double: StripeDouble,
    api_base: str = "https://api.stripe.com",
) -> None:
    """Register callbacks answering every request under ``api_base`` from ``double``.

    A fault injected with ``kind="timeout"`` raises ``requests.exceptions.ReadTimeout``
    (after applying the request when ``apply_first=True``), as a lost response would.
    """
    base = api_base.rstrip("/")
    pattern = re.compile(re.escape(base) + r"(/.*)?")

    def callback(
        request: requests.PreparedRequest,
    ) -> tuple[int, dict[str, str], str]:
        url = urlsplit(request.url or "")
        body = request.body
        if isinstance(body, str):
            body = body.encode()
        resp = double.request(
            request.method or "GET",
            url.path,
            query=url.query,
            body=body if isinstance(body, bytes) else None,
            headers=dict(request.headers),
        )
        if resp.timeout:
            raise requests.exceptions.ReadTimeout(
                "stripe_sandbox: injected read timeout", request=request
            )
        return resp.status, resp.headers, json.dumps(resp.body)

    rsps.add(_AnyMethodCallback("GET", pattern, callback=callback, content_type=None))


class _AnyMethodCallback(responses.CallbackResponse):
    """One registration answering every HTTP method.

    One registration instead of one per method, so that a
    ``RequestsMock(assert_all_requests_are_fired=True)`` is not failed by the
    methods a test happened not to use.
    """

    def matches(self, request: requests.PreparedRequest) -> tuple[bool, str]:
        if (request.method or "").upper() not in _METHODS:
            return False, "Method does not match"
        if not self._url_matches(self.url, str(request.url)):
            return False, "URL does not match"
        return True, ""
