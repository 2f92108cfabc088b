"""Decoding of Stripe's form-encoded parameters, and typed parameter access.

Part of ``stripe_sandbox``, a test and demo tool: never used with real money.
stripe-python sends ``application/x-www-form-urlencoded`` bodies with nested
keys (``items[0][id]=si_1``, ``metadata[k]=v``, ``expand[]=x``); Stripe's API
sees nested objects and arrays.  The helpers here rebuild that structure and
read values with Stripe's validation rules (integers arrive as strings and a
non-integer is a 400), so the double rejects what Stripe would reject.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import parse_qsl

from stripe_sandbox.errors import StripeError, bad_request, missing_param, unknown_param

Params = dict[str, Any]

_KEY_RE = re.compile(r"^([^\[\]]+)((?:\[[^\[\]]*\])*)$")
_PART_RE = re.compile(r"\[([^\[\]]*)\]")


def decode_pairs(pairs: Iterable[tuple[str, str]]) -> Params:
    """Turn ``(key, value)`` pairs with bracketed keys into nested dicts/lists.

    Indexed keys (``a[0]``) and empty brackets (``a[]``) become lists; other
    bracketed keys become dicts.  Values stay strings: typing is done by the
    endpoint that knows what it expects, like Stripe does.
    """
    root: dict[str, Any] = {}
    for raw_key, value in pairs:
        m = _KEY_RE.match(raw_key)
        if m is None:
            raise bad_request(f"Invalid parameter name: {raw_key}")
        parts = [m.group(1), *_PART_RE.findall(m.group(2))]
        _insert(root, parts, value, raw_key)
    result: Params = _listify(root)
    return result


def decode_form(body: str | bytes | None) -> Params:
    """Decode an ``x-www-form-urlencoded`` body or query string into nested params."""
    if body is None:
        return {}
    text = body.decode("utf-8") if isinstance(body, bytes) else body
    return decode_pairs(parse_qsl(text, keep_blank_values=True))


_APPEND = object()


def _insert(node: dict[str, Any], parts: list[str], value: str, raw_key: str) -> None:
    cur: dict[str, Any] = node
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        key: str = part
        if part == "":
            # ``a[]``: append, tracked by a private counter on the container.
            n = cur.setdefault("\0count", 0)
            cur["\0count"] = n + 1
            key = str(n)
        if last:
            if key in cur and isinstance(cur[key], dict):
                raise bad_request(f"Invalid parameter: {raw_key} mixes a value and an object")
            cur[key] = value
            return
        child = cur.setdefault(key, {})
        if not isinstance(child, dict):
            raise bad_request(f"Invalid parameter: {raw_key} mixes a value and an object")
        cur = child


def _listify(node: dict[str, Any]) -> Any:
    """Dicts whose keys are all decimal indexes become lists (in index order)."""
    node.pop("\0count", None)
    for k, v in list(node.items()):
        if isinstance(v, dict):
            node[k] = _listify(v)
    if node and all(k.isdigit() for k in node):
        return [node[k] for k in sorted(node, key=int)]
    return node


# --- typed access -----------------------------------------------------------


def check_known(params: Mapping[str, Any], allowed: Iterable[str], prefix: str = "") -> None:
    """400 for parameters the endpoint does not know (Stripe rejects them too)."""
    allowed_set = set(allowed) | {"expand"}
    for key in params:
        if key not in allowed_set:
            raise unknown_param(f"{prefix}[{key}]" if prefix else key)


def opt_str(params: Mapping[str, Any], key: str, param: str | None = None) -> str | None:
    value = params.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise bad_request(f"Invalid string: {param or key}", param=param or key)
    return value


def req_str(params: Mapping[str, Any], key: str, param: str | None = None) -> str:
    value = opt_str(params, key, param)
    if value is None or value == "":
        raise missing_param(param or key)
    return value


def parse_int(value: Any, param: str) -> int:
    """Stripe accepts only plain decimal integers here ("12", "-5"; not "1.5")."""
    if isinstance(value, str) and re.fullmatch(r"-?\d+", value.strip()):
        return int(value)
    shown = value if isinstance(value, str) else "an object"
    raise StripeError(400, f"Invalid integer: {shown}", param=param)


def opt_int(params: Mapping[str, Any], key: str, param: str | None = None) -> int | None:
    value = params.get(key)
    if value is None:
        return None
    return parse_int(value, param or key)


def req_int(params: Mapping[str, Any], key: str, param: str | None = None) -> int:
    value = opt_int(params, key, param)
    if value is None:
        raise missing_param(param or key)
    return value


def opt_bool(params: Mapping[str, Any], key: str, param: str | None = None) -> bool | None:
    value = params.get(key)
    if value is None:
        return None
    if value == "true":
        return True
    if value == "false":
        return False
    raise bad_request(f"Invalid boolean: {value}", param=param or key)


def opt_enum(
    params: Mapping[str, Any], key: str, choices: Iterable[str], param: str | None = None
) -> str | None:
    value = opt_str(params, key, param)
    if value is None:
        return None
    options = list(choices)
    if value not in options:
        name = param or key
        raise bad_request(f"Invalid {name}: must be one of {', '.join(options)}", param=name)
    return value


def opt_dict(params: Mapping[str, Any], key: str, param: str | None = None) -> Params | None:
    value = params.get(key)
    if value is None:
        return None
    if value == "":
        return {}
    if not isinstance(value, dict):
        raise bad_request("Invalid object", param=param or key)
    return value


def opt_list(params: Mapping[str, Any], key: str, param: str | None = None) -> list[Any] | None:
    value = params.get(key)
    if value is None:
        return None
    if isinstance(value, dict) and not value:
        return []
    if not isinstance(value, list):
        raise bad_request("Invalid array", param=param or key)
    return value


def metadata_update(current: Mapping[str, str], params: Mapping[str, Any]) -> dict[str, str]:
    """Merge ``metadata[...]`` like Stripe: empty string unsets a key, ``metadata=`` clears."""
    raw = params.get("metadata")
    if raw is None:
        return dict(current)
    if raw == "":
        return {}
    if not isinstance(raw, dict):
        raise bad_request("Invalid object", param="metadata")
    merged = dict(current)
    for k, v in raw.items():
        if not isinstance(v, str):
            raise bad_request("Invalid metadata value", param=f"metadata[{k}]")
        if v == "":
            merged.pop(k, None)
        else:
            merged[k] = v
    return merged


def expand_list(params: Mapping[str, Any]) -> list[str]:
    raw = params.get("expand")
    if raw is None:
        return []
    if isinstance(raw, str):
        return [raw]
    if isinstance(raw, list) and all(isinstance(x, str) for x in raw):
        return list(raw)
    raise bad_request("Invalid array", param="expand")
