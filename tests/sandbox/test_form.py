"""decode_form: stripe-python's nested form encoding back into objects."""

from __future__ import annotations

from urllib.parse import urlencode

import pytest
from stripe._encode import _api_encode

from stripe_sandbox.errors import StripeError
from stripe_sandbox.form import decode_form, opt_bool, parse_int


def encode_like_stripe(params: dict[str, object]) -> str:
    """The exact body stripe-python sends (brackets left unescaped)."""
    return urlencode(list(_api_encode(params))).replace("%5B", "[").replace("%5D", "]")


def test_flat_and_metadata() -> None:
    body = "email=a%40b.test&metadata[account]=acc_1&metadata[tier]=gold"
    assert decode_form(body) == {
        "email": "a@b.test",
        "metadata": {"account": "acc_1", "tier": "gold"},
    }


def test_indexed_list_of_objects_round_trips_stripe_python_encoding() -> None:
    params: dict[str, object] = {
        "items": [{"id": "si_1", "quantity": 10}, {"price": "price_2", "quantity": 1}],
        "proration_behavior": "always_invoice",
        "billing_cycle_anchor": {"type": "unchanged"},
        "expand": ["latest_invoice", "customer"],
        "cancel_at_period_end": False,
    }
    assert decode_form(encode_like_stripe(params)) == {
        "items": [{"id": "si_1", "quantity": "10"}, {"price": "price_2", "quantity": "1"}],
        "proration_behavior": "always_invoice",
        "billing_cycle_anchor": {"type": "unchanged"},
        "expand": ["latest_invoice", "customer"],
        "cancel_at_period_end": "false",
    }


def test_empty_brackets_append_and_indexes_sort_numerically() -> None:
    assert decode_form("expand[]=a&expand[]=b") == {"expand": ["a", "b"]}
    body = "&".join(f"items[{i}][quantity]={i}" for i in (10, 2, 0, 1))
    assert [x["quantity"] for x in decode_form(body)["items"]] == ["0", "1", "2", "10"]


def test_blank_values_are_kept_and_none_is_empty() -> None:
    assert decode_form("metadata[k]=") == {"metadata": {"k": ""}}
    assert decode_form(None) == {}
    assert decode_form(b"a=1") == {"a": "1"}


def test_value_and_object_under_one_key_is_400() -> None:
    with pytest.raises(StripeError) as err:
        decode_form("a=1&a[b]=2")
    assert err.value.status == 400


@pytest.mark.parametrize("raw", ["1.5", "ten", "", "1e3"])
def test_non_integers_are_rejected_like_stripe(raw: str) -> None:
    with pytest.raises(StripeError) as err:
        parse_int(raw, "quantity")
    assert err.value.status == 400
    assert err.value.param == "quantity"
    assert err.value.body()["error"]["message"] == f"Invalid integer: {raw}"


def test_integers_and_booleans() -> None:
    assert parse_int("-500", "amount") == -500
    assert opt_bool({"x": "true"}, "x") is True
    with pytest.raises(StripeError):
        opt_bool({"x": "yes"}, "x")
