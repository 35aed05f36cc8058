"""Hypothesis strategies the provider tests share, and the check they run on what they draw."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from hypothesis import strategies as st

from connector.errors import DecodeError, VerificationError
from connector.providers.base import DecodeContext, Secrets, WebhookProvider

# Any JSON document (numbers json.dumps can write, short strings).
JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**20), max_value=10**20)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=5)
    ),
    max_leaves=25,
)


def shaped(keys: list[str], values: list[str]) -> st.SearchStrategy[Any]:
    """Nested objects with a provider's own keys and some of its values: they reach further
    into a decoder than `JSON`, whose random keys are refused at the first field."""
    return st.recursive(
        st.none() | st.integers(-5, 5) | st.text(max_size=8) | st.sampled_from(values),
        lambda children: (
            st.dictionaries(st.sampled_from(keys), children, max_size=6)
            | st.lists(children, max_size=2)
        ),
        max_leaves=30,
    )


def only_expected_errors(
    provider: WebhookProvider,
    body: bytes,
    context: DecodeContext,
    headers: Mapping[str, str],
    secrets: Secrets,
) -> None:
    """`decode` raises at most DecodeError, `delivery_id` nothing, `verify` (with `headers`) at
    most VerificationError."""
    try:
        provider.decode(body, {}, context)
    except DecodeError:
        pass
    provider.delivery_id(body, {})
    try:
        provider.verify(body, headers, secrets)
    except VerificationError:
        pass
