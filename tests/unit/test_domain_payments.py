"""The decisions about payments outside Stripe, refunds and bank accounts, by table."""

from __future__ import annotations

import pytest

from connector.domain.payments import (
    PartialPayment,
    PaymentSplit,
    mask_account_number,
    refund_refusal,
    split_payment,
)


@pytest.mark.parametrize(
    ("amount", "remaining", "split"),
    [
        (370000, 365000, PaymentSplit(applied=365000, excess=5000)),  # 50.00 too much
        (365000, 365000, PaymentSplit(applied=365000, excess=0)),
        (5000, 0, PaymentSplit(applied=0, excess=5000)),
    ],
)
def test_a_transfer_pays_what_remains_and_the_rest_is_credit(
    amount: int, remaining: int, split: PaymentSplit
) -> None:
    assert split_payment(amount, remaining) == split


def test_a_transfer_below_what_remains_is_refused() -> None:
    with pytest.raises(PartialPayment, match="less than what remains"):
        split_payment(100000, 365000)


@pytest.mark.parametrize(
    ("typed", "masked", "last4"),
    [
        ("DE89 3704 0044 0532 0130 00", "•" * 18 + "3000", "3000"),
        ("12-3456-78", "••••5678", "5678"),
        ("gb29nwbk60161331926819", "•" * 18 + "6819", "6819"),
    ],
)
def test_an_account_number_keeps_only_its_last_four(typed: str, masked: str, last4: str) -> None:
    assert mask_account_number(typed) == (masked, last4)


@pytest.mark.parametrize("typed", ["123", "12 34 5€", "x" * 35, ""])
def test_what_is_not_an_account_number_is_refused(typed: str) -> None:
    with pytest.raises(ValueError):
        mask_account_number(typed)


@pytest.mark.parametrize(
    ("statuses", "confirmed", "credit", "code"),
    [
        (["active"], True, 5000, "subscription_active"),
        (["canceled", "past_due"], True, 5000, "subscription_active"),
        (["canceled"], False, 5000, "bank_confirmation_missing"),
        (["canceled", "incomplete_expired"], True, 0, "no_credit"),
        (["canceled"], True, -200, "no_credit"),  # the customer owes, not the other way
        (["canceled"], True, 5000, None),
        ([], True, 1, None),
    ],
)
def test_credit_is_refunded_only_after_the_contract_ended_to_a_confirmed_account(
    statuses: list[str], confirmed: bool, credit: int, code: str | None
) -> None:
    refusal = refund_refusal(statuses, confirmed, credit)
    assert (refusal[0] if refusal else None) == code
