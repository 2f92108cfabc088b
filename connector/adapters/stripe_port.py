"""The one narrow door to Stripe: only the calls the connector makes, typed.

`StripePort` is what services depend on; `StripeClientPort` implements it on an injected
`stripe.StripeClient` (API version pinned, base address and key from settings, no global
`stripe.api_key`). Tests use the same implementation against the Stripe double through
`responses`, so the HTTP the connector sends is what Stripe receives.

Longer than our ~400-line guide on purpose: the port, its typed results and their
translation from Stripe's objects stay side by side, so every call the connector makes to
Stripe can be read in one file.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Protocol, TypeVar
from urllib.parse import quote, urlsplit

import requests
import stripe
from requests.adapters import HTTPAdapter
from requests.utils import get_environ_proxies
from stripe.params import InvoiceItemCreateParams

from connector.adapters.metrics import count_stripe_calls
from connector.adapters.stripe_errors import StripeErrorKind, classify
from connector.config import STRIPE_API_VERSION, StripeSettings
from connector.errors import Invalid, NotFound, UpstreamUnavailable

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class StripeItem:
    stripe_subscription_item_id: str
    stripe_price_id: str
    unit_amount: int
    currency: str
    interval: str
    interval_count: int
    quantity: int
    period_start: datetime
    period_end: datetime


@dataclass(frozen=True, slots=True)
class StripeSubscription:
    stripe_subscription_id: str
    stripe_customer_id: str
    status: str
    billing_mode: str  # classic | flexible
    currency: str
    billing_cycle_anchor: datetime
    items: tuple[StripeItem, ...]


@dataclass(frozen=True, slots=True)
class ItemBilling:
    """What Stripe billed one item for its current period so far (open or paid invoices)."""

    highest_quantity: int  # the highest quantity a positive line charged (0 if none)
    credited: bool  # a credit proration for the item this period, invoiced or pending


@dataclass(frozen=True, slots=True)
class QuantityUpdateRequest:
    stripe_subscription_id: str
    stripe_subscription_item_id: str
    quantity: int
    proration_behavior: str  # always_invoice | create_prorations | none
    proration_date: datetime | None
    idempotency_key: str


@dataclass(frozen=True, slots=True)
class StripeInvoiceLine:
    stripe_line_id: str
    amount: int
    quantity: int | None
    proration: bool
    period_start: datetime
    period_end: datetime


@dataclass(frozen=True, slots=True)
class StripeInvoice:
    stripe_invoice_id: str
    stripe_customer_id: str
    stripe_subscription_id: str | None  # parent.subscription_details.subscription
    status: str  # draft | open | paid | uncollectible | void
    amount_due: int
    amount_paid: int
    amount_remaining: int
    amount_overpaid: int
    currency: str
    billing_reason: str | None
    attempt_count: int
    next_payment_attempt: datetime | None
    last_finalization_error: str | None
    created: datetime
    lines: tuple[StripeInvoiceLine, ...]
    auto_advance: bool = False  # whether Stripe collects it automatically (retries, reminders)
    collection_method: str = "charge_automatically"  # or send_invoice
    due_date: datetime | None = None  # send_invoice only


@dataclass(frozen=True, slots=True)
class StripeCustomerBalance:
    stripe_customer_id: str
    balance: int  # Stripe's sign: negative is credit the customer holds
    currency: str | None
    cash_balance: dict[str, int] | None  # `cash_balance.available`, when asked for


@dataclass(frozen=True, slots=True)
class OneOffInvoiceRequest:
    """One line of `quantity` x `unit_amount` (negative: a credit) for a subscription's
    customer, on a one-off invoice made in three idempotent steps (a draft that
    leaves pending items alone, the item attached to it explicitly, then finalization): a
    true-up, or the correction of a period that has ended."""

    stripe_customer_id: str
    stripe_subscription_id: str
    currency: str
    unit_amount: int
    quantity: int
    description: str
    period_start: datetime
    period_end: datetime
    metadata: dict[str, str]
    idempotency_key: str  # the base: each step sends it with its own suffix


def issue_one_off_invoice(
    port: StripePort,
    request: OneOffInvoiceRequest,
    stripe_invoice_id: str | None,
    save: Callable[..., None],
) -> str:
    """The request's line on an invoice of its own, finalized: a draft that leaves pending
    items alone, the item, finalization. Each step is skipped when Stripe already shows it
    done, so a retry finishes what a crash interrupted (idempotency keys last only 24 hours).
    `stripe_invoice_id`: the draft an earlier attempt made; `save` keeps each new id
    (`stripe_invoice_id=`, `stripe_invoice_item_id=`) before the next step."""
    invoice = None
    if stripe_invoice_id is None:
        stripe_invoice_id = port.create_draft_invoice(request)
        save(stripe_invoice_id=stripe_invoice_id)
    else:
        invoice = port.retrieve_invoice(stripe_invoice_id)
    if invoice is None or (invoice.status == "draft" and not invoice.lines):
        save(stripe_invoice_item_id=port.add_invoice_item(stripe_invoice_id, request))
    if invoice is None or invoice.status == "draft":
        port.finalize_invoice(stripe_invoice_id, f"{request.idempotency_key}-finalize")
    return stripe_invoice_id


@dataclass(frozen=True, slots=True)
class BalanceTransactionRequest:
    """A customer balance transaction: `amount` in Stripe's sign (negative credits the
    customer, positive debits the credit balance)."""

    stripe_customer_id: str
    amount: int
    currency: str
    description: str
    metadata: dict[str, str]
    idempotency_key: str


class StripePort(Protocol):
    def retrieve_subscription(self, stripe_subscription_id: str) -> StripeSubscription: ...

    def list_subscriptions(self) -> Iterator[StripeSubscription]:
        """Every subscription of the account, any status, 100 a page."""
        ...

    def item_billing(
        self, stripe_customer_id: str, stripe_subscription_id: str, item: StripeItem
    ) -> ItemBilling:
        """What Stripe billed and credited `item` for its current period so far."""
        ...

    def update_quantity(self, update: QuantityUpdateRequest) -> str | None:
        """Set an item's quantity; returns the subscription's latest invoice id."""
        ...

    def invoice_pending_items(
        self, stripe_customer_id: str, stripe_subscription_id: str, idempotency_key: str
    ) -> str:
        """Invoice a subscription's pending prorations now; returns the invoice id."""
        ...

    def create_subscription(
        self,
        stripe_customer_id: str,
        quantities_by_price: list[tuple[str, int]],
        idempotency_key: str,
    ) -> StripeSubscription: ...

    def retrieve_invoice(self, stripe_invoice_id: str) -> StripeInvoice:
        """The invoice as it is now, every line included."""
        ...

    def retrieve_customer_balance(
        self, stripe_customer_id: str, with_cash_balance: bool
    ) -> StripeCustomerBalance | None:
        """The customer's credit balance (and cash balance when asked); None if deleted."""
        ...

    def list_events(self, since: datetime) -> Iterator[dict[str, Any]]:
        """Every event Stripe still keeps (30 days) created at or after `since`, as the
        JSON a webhook delivers, 100 a page."""
        ...

    def create_draft_invoice(self, request: OneOffInvoiceRequest) -> str:
        """A draft invoice for the subscription, without pending items; returns its id."""
        ...

    def add_invoice_item(self, stripe_invoice_id: str, request: OneOffInvoiceRequest) -> str:
        """The request's line on that draft invoice; returns the invoice item id."""
        ...

    def finalize_invoice(self, stripe_invoice_id: str, idempotency_key: str) -> StripeInvoice:
        """Finalize a draft and let Stripe collect it (auto_advance)."""
        ...

    def add_pending_invoice_item(self, request: OneOffInvoiceRequest) -> str:
        """The request's line as a pending item of its subscription, for the subscription's
        next invoice; returns the invoice item id."""
        ...

    def find_invoice_item(
        self, stripe_customer_id: str, created_since: datetime, key: str, value: str
    ) -> str | None:
        """The customer's invoice item created since then whose metadata `key` is `value`."""
        ...

    def pay_invoice_out_of_band(self, stripe_invoice_id: str, idempotency_key: str) -> None:
        """Mark an open invoice paid outside Stripe (in full: what remains of it)."""
        ...

    def create_balance_transaction(self, request: BalanceTransactionRequest) -> str:
        """Move the customer's credit balance; returns the balance transaction id."""
        ...

    def find_balance_transaction(
        self, stripe_customer_id: str, metadata_key: str, metadata_value: str
    ) -> str | None:
        """The id of the customer's balance transaction whose metadata has that value
        (among its newest 100), or None: did an earlier write whose answer was lost land?"""
        ...

    def set_invoice_auto_advance(
        self, stripe_invoice_id: str, auto_advance: bool, idempotency_key: str
    ) -> None:
        """Turn Stripe's automatic collection of a draft or open invoice off or on."""
        ...


def _timestamp(value: int) -> datetime:
    return datetime.fromtimestamp(value, tz=UTC)


def _id(value: Any) -> str:
    """An expandable field: either the id or the expanded object."""
    return value if isinstance(value, str) else str(value.id)


def subscription_from_stripe(obj: stripe.Subscription) -> StripeSubscription:
    return subscription_from_json(obj.to_dict())


def subscription_from_json(data: Mapping[str, Any]) -> StripeSubscription:
    """Our view of a subscription, from its JSON. Only per-unit recurring prices are seats:
    other items (tiered, metered, one-off) are left out, and a seat type naming one is
    refused."""
    items = []
    for item in data["items"]["data"]:
        price = item["price"]
        recurring = price.get("recurring")
        if (
            price.get("unit_amount") is None
            or recurring is None
            or recurring.get("usage_type") != "licensed"
        ):
            continue
        items.append(
            StripeItem(
                stripe_subscription_item_id=item["id"],
                stripe_price_id=price["id"],
                unit_amount=price["unit_amount"],
                currency=price["currency"],
                interval=recurring["interval"],
                interval_count=recurring["interval_count"],
                quantity=item.get("quantity") or 0,
                period_start=_timestamp(item["current_period_start"]),
                period_end=_timestamp(item["current_period_end"]),
            )
        )
    customer = data["customer"]
    return StripeSubscription(
        stripe_subscription_id=data["id"],
        stripe_customer_id=customer if isinstance(customer, str) else customer["id"],
        status=data["status"],
        billing_mode=(data.get("billing_mode") or {}).get("type") or "classic",
        currency=data["currency"],
        billing_cycle_anchor=_timestamp(data["billing_cycle_anchor"]),
        items=tuple(items),
    )


def _proration(line: Any) -> bool:
    """2025+ shape: a line says whether it is a proration under its parent's details."""
    parent = getattr(line, "parent", None)
    for details in ("subscription_item_details", "invoice_item_details"):
        found = getattr(parent, details, None) if parent is not None else None
        if found is not None:
            return bool(getattr(found, "proration", False))
    return False


def invoice_from_stripe(obj: stripe.Invoice, lines: list[Any]) -> StripeInvoice:
    parent = getattr(obj, "parent", None)
    details = getattr(parent, "subscription_details", None) if parent is not None else None
    subscription = getattr(details, "subscription", None) if details is not None else None
    error = getattr(obj, "last_finalization_error", None)
    next_attempt = getattr(obj, "next_payment_attempt", None)
    return StripeInvoice(
        stripe_invoice_id=obj.id or "",
        stripe_customer_id=_id(obj.customer),
        stripe_subscription_id=None if subscription is None else _id(subscription),
        status=obj.status or "draft",
        amount_due=obj.amount_due,
        amount_paid=obj.amount_paid,
        amount_remaining=obj.amount_remaining,
        amount_overpaid=getattr(obj, "amount_overpaid", 0) or 0,
        currency=obj.currency,
        billing_reason=obj.billing_reason,
        attempt_count=obj.attempt_count or 0,
        next_payment_attempt=None if next_attempt is None else _timestamp(next_attempt),
        last_finalization_error=None if error is None else getattr(error, "message", None),
        created=_timestamp(obj.created),
        auto_advance=bool(getattr(obj, "auto_advance", False)),
        collection_method=getattr(obj, "collection_method", None) or "charge_automatically",
        due_date=None if not obj.due_date else _timestamp(obj.due_date),
        lines=tuple(
            StripeInvoiceLine(
                stripe_line_id=line.id,
                amount=line.amount,
                quantity=line.quantity,
                proration=_proration(line),
                period_start=_timestamp(line.period.start),
                period_end=_timestamp(line.period.end),
            )
            for line in lines
        ),
    )


# Connections to Stripe kept open for reuse: one per thread that calls at once (a sync
# worker runs up to 256); no more are opened than were in use together.
KEPT_CONNECTIONS = 256


def make_stripe_client(settings: StripeSettings) -> stripe.StripeClient:
    """A client for one Stripe account. `requests` is the HTTP client (tests fake it).

    One `requests` session for every thread, which does not read the environment on each
    request: the proxy settings (`HTTPS_PROXY`, `NO_PROXY`) are read once, here. Read per
    request, they were a quarter of the CPU a Stripe call costs (0.4 ms, measured)."""
    session = requests.Session()
    session.trust_env = False
    for scheme in ("https://", "http://"):
        session.mount(scheme, HTTPAdapter(pool_maxsize=KEPT_CONNECTIONS))
    return stripe.StripeClient(
        settings.api_key.get_secret_value(),
        stripe_version=STRIPE_API_VERSION,
        base_addresses={"api": settings.api_base},
        max_network_retries=settings.max_network_retries,
        http_client=stripe.RequestsClient(
            timeout=settings.timeout_seconds,
            session=session,
            proxy=_proxy_from_environment(settings.api_base),
        ),
    )


def _proxy_from_environment(api_base: str) -> str | None:
    """The proxy the environment names for Stripe's address, as `requests` would pick it
    (unless `NO_PROXY` covers the host)."""
    proxies = get_environ_proxies(api_base)
    return proxies.get(urlsplit(api_base).scheme) or proxies.get("all")


@count_stripe_calls  # seatsync_stripe_calls_total{operation=<method>, outcome}
class StripeClientPort:
    def __init__(self, client: stripe.StripeClient) -> None:
        self._client = client

    def retrieve_subscription(self, stripe_subscription_id: str) -> StripeSubscription:
        # The JSON read as it is (as list_subscriptions does): the SDK's objects, built
        # and turned back into a dict, were a third of the sync's CPU.
        path = f"/v1/subscriptions/{quote(stripe_subscription_id, safe='')}"
        return subscription_from_json(self._client.raw_request("get", path).data)

    def create_subscription(
        self,
        stripe_customer_id: str,
        quantities_by_price: list[tuple[str, int]],
        idempotency_key: str,
    ) -> StripeSubscription:
        obj = self._client.v1.subscriptions.create(
            {
                "customer": stripe_customer_id,
                "items": [
                    {"price": price, "quantity": quantity}
                    for price, quantity in quantities_by_price
                ],
                "billing_mode": {"type": "flexible"},
                "metadata": {"managed_by": "seatsync"},
            },
            {"idempotency_key": idempotency_key},
        )
        return subscription_from_stripe(obj)

    def list_subscriptions(self) -> Iterator[StripeSubscription]:
        # Each page's JSON is read as it is: building the SDK's objects costs about a
        # millisecond a subscription, most of a reconcile's time at 100,000 subscriptions.
        params: dict[str, Any] = {"status": "all", "limit": 100}
        while True:
            page = self._client.raw_request("get", "/v1/subscriptions", **params).data
            for data in page["data"]:
                yield subscription_from_json(data)
            if not page["has_more"] or not page["data"]:
                return
            params["starting_after"] = page["data"][-1]["id"]

    def update_quantity(self, update: QuantityUpdateRequest) -> str | None:
        params: dict[str, Any] = {
            "items": [{"id": update.stripe_subscription_item_id, "quantity": update.quantity}],
            "proration_behavior": update.proration_behavior,
        }
        if update.proration_date is not None:
            params["proration_date"] = int(update.proration_date.timestamp())
        if update.proration_behavior == "always_invoice":
            # The change applies even if the payment fails; dunning is Stripe's business.
            params["payment_behavior"] = "allow_incomplete"
        path = f"/v1/subscriptions/{quote(update.stripe_subscription_id, safe='')}"
        data = self._client.raw_request(
            "post", path, **params, idempotency_key=update.idempotency_key
        ).data
        latest = data.get("latest_invoice")
        return None if latest is None else latest if isinstance(latest, str) else latest["id"]

    def invoice_pending_items(
        self, stripe_customer_id: str, stripe_subscription_id: str, idempotency_key: str
    ) -> str:
        invoice = self._client.v1.invoices.create(
            {
                "customer": stripe_customer_id,
                "subscription": stripe_subscription_id,
                "pending_invoice_items_behavior": "include",
                "auto_advance": True,
            },
            {"idempotency_key": idempotency_key},
        )
        finalized = self._client.v1.invoices.finalize_invoice(
            invoice.id or "", options={"idempotency_key": f"{idempotency_key}-finalize"}
        )
        return finalized.id or ""

    def item_billing(
        self, stripe_customer_id: str, stripe_subscription_id: str, item: StripeItem
    ) -> ItemBilling:
        period_start = int(item.period_start.timestamp())
        highest, credited = 0, False
        invoices = self._client.v1.invoices.list(
            {"subscription": stripe_subscription_id, "limit": 100}
        )
        for invoice in invoices.auto_paging_iter():
            if invoice.status not in ("open", "paid"):  # drafts, void, uncollectible: unpaid
                continue
            lines = invoice.lines.data
            if invoice.lines.has_more:  # a list embeds only an invoice's first lines
                assert invoice.id is not None
                lines = list(
                    self._client.v1.invoices.line_items.list(
                        invoice.id, {"limit": 100}
                    ).auto_paging_iter()
                )
            for line in lines:
                parent = line.parent
                details = parent.subscription_item_details if parent else None
                if (
                    details is None
                    or details.subscription_item != item.stripe_subscription_item_id
                    or line.period.start < period_start
                ):
                    continue
                if line.amount > 0:
                    highest = max(highest, line.quantity or 0)
                elif line.amount < 0:
                    credited = True
        pending = self._client.v1.invoice_items.list(
            {"customer": stripe_customer_id, "pending": True, "limit": 100}
        )
        for pending_item in pending.auto_paging_iter():
            item_parent = pending_item.parent
            owner = item_parent.subscription_details if item_parent else None
            if (
                owner is not None
                and getattr(owner, "subscription_item", None) == item.stripe_subscription_item_id
                and pending_item.amount < 0
            ):
                credited = True
        return ItemBilling(highest_quantity=highest, credited=credited)

    def retrieve_invoice(self, stripe_invoice_id: str) -> StripeInvoice:
        obj = self._client.v1.invoices.retrieve(stripe_invoice_id)
        lines = list(obj.lines.data)
        if obj.lines.has_more:  # the invoice embeds only its first lines
            page = self._client.v1.invoices.line_items.list(stripe_invoice_id, {"limit": 100})
            lines = list(page.auto_paging_iter())
        return invoice_from_stripe(obj, lines)

    def retrieve_customer_balance(
        self, stripe_customer_id: str, with_cash_balance: bool
    ) -> StripeCustomerBalance | None:
        params: dict[str, Any] = {"expand": ["cash_balance"]} if with_cash_balance else {}
        obj = self._client.v1.customers.retrieve(stripe_customer_id, params)  # type: ignore[arg-type]
        if getattr(obj, "deleted", False):
            return None
        cash = getattr(obj, "cash_balance", None) if with_cash_balance else None
        available = getattr(cash, "available", None) if cash is not None else None
        # A StripeObject is no dict (`.items()` raises): `to_dict()`. No funds: null.
        funds = {} if available is None else available.to_dict()
        return StripeCustomerBalance(
            stripe_customer_id=obj.id,
            balance=obj.balance or 0,
            currency=obj.currency,
            cash_balance=None if cash is None else {k: int(v) for k, v in funds.items()},
        )

    def create_draft_invoice(self, request: OneOffInvoiceRequest) -> str:
        invoice = self._client.v1.invoices.create(
            {
                "customer": request.stripe_customer_id,
                "subscription": request.stripe_subscription_id,
                "pending_invoice_items_behavior": "exclude",
                "auto_advance": False,
                "description": request.description,
                "metadata": request.metadata,
            },
            {"idempotency_key": f"{request.idempotency_key}-invoice"},
        )
        return invoice.id or ""

    def add_invoice_item(self, stripe_invoice_id: str, request: OneOffInvoiceRequest) -> str:
        return self._create_invoice_item(request, {"invoice": stripe_invoice_id})

    def add_pending_invoice_item(self, request: OneOffInvoiceRequest) -> str:
        return self._create_invoice_item(request, {"subscription": request.stripe_subscription_id})

    def find_invoice_item(
        self, stripe_customer_id: str, created_since: datetime, key: str, value: str
    ) -> str | None:
        items = self._client.v1.invoice_items.list(
            {
                "customer": stripe_customer_id,
                "created": {"gte": int(created_since.timestamp())},
                "limit": 100,
            }
        )
        for item in items.auto_paging_iter():
            metadata = item.metadata.to_dict() if item.metadata else {}
            if metadata.get(key) == value:
                return item.id
        return None

    def _create_invoice_item(
        self, request: OneOffInvoiceRequest, attach: InvoiceItemCreateParams
    ) -> str:
        """`attach`: the draft invoice the line goes on, or the subscription it waits for."""
        item = self._client.v1.invoice_items.create(
            {
                "customer": request.stripe_customer_id,
                **attach,
                "currency": request.currency,
                "unit_amount_decimal": Decimal(request.unit_amount),
                "quantity": request.quantity,
                "description": request.description,
                "period": {
                    "start": int(request.period_start.timestamp()),
                    "end": int(request.period_end.timestamp()),
                },
                "metadata": request.metadata,
            },
            {"idempotency_key": f"{request.idempotency_key}-item"},
        )
        return item.id or ""

    def finalize_invoice(self, stripe_invoice_id: str, idempotency_key: str) -> StripeInvoice:
        self._client.v1.invoices.finalize_invoice(
            stripe_invoice_id,
            {"auto_advance": True},
            {"idempotency_key": idempotency_key},
        )
        return self.retrieve_invoice(stripe_invoice_id)

    def pay_invoice_out_of_band(self, stripe_invoice_id: str, idempotency_key: str) -> None:
        self._client.v1.invoices.pay(
            stripe_invoice_id,
            {"paid_out_of_band": True},
            {"idempotency_key": idempotency_key},
        )

    def create_balance_transaction(self, request: BalanceTransactionRequest) -> str:
        created = self._client.v1.customers.balance_transactions.create(
            request.stripe_customer_id,
            {
                "amount": request.amount,
                "currency": request.currency,
                "description": request.description,
                "metadata": request.metadata,
            },
            {"idempotency_key": request.idempotency_key},
        )
        return created.id

    def find_balance_transaction(
        self, stripe_customer_id: str, metadata_key: str, metadata_value: str
    ) -> str | None:
        page = self._client.v1.customers.balance_transactions.list(
            stripe_customer_id, {"limit": 100}
        )
        for transaction in page.data:
            metadata = transaction.metadata
            if metadata and metadata_key in metadata and metadata[metadata_key] == metadata_value:
                return transaction.id
        return None

    def set_invoice_auto_advance(
        self, stripe_invoice_id: str, auto_advance: bool, idempotency_key: str
    ) -> None:
        self._client.v1.invoices.update(
            stripe_invoice_id,
            {"auto_advance": auto_advance},
            {"idempotency_key": idempotency_key},
        )

    def list_events(self, since: datetime) -> Iterator[dict[str, Any]]:
        page = self._client.v1.events.list(
            {"created": {"gte": int(since.timestamp())}, "limit": 100}
        )
        for obj in page.auto_paging_iter():
            yield obj.to_dict(for_json=True)  # decimals as the strings Stripe sent


def call_stripe(what: str, call: Callable[[], T]) -> T:
    """Run a Stripe call for a request, turning Stripe's errors into refusals a caller reads."""
    try:
        return call()
    except stripe.StripeError as error:
        kind = classify(error)
        message = error.user_message or str(error) or type(error).__name__
        if kind is StripeErrorKind.NOT_FOUND:
            raise NotFound("stripe_object_missing", f"{what}: Stripe says {message}") from error
        if kind is StripeErrorKind.RETRYABLE:
            raise UpstreamUnavailable(
                "stripe_unavailable", f"{what}: Stripe is unavailable ({message}); try again"
            ) from error
        raise Invalid("stripe_rejected", f"{what}: Stripe refused: {message}") from error
