"""Stripe webhooks, as a named pipeline: reject unsigned → verify → store → de-duplicate →
dispatch through the explicit table `handlers.HANDLERS` → record the outcome.

`receiver` verifies and stores (nothing else happens before Stripe's 2xx); `processing`
runs the handlers afterwards with retries; `replay` catches up from Stripe's event list
through the same steps. Handlers re-read objects from Stripe: payloads are only hints.
This package never imports `sync` (sibling layers): the composition root gives handlers a
`request_sync` callable.
"""
