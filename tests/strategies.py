"""Hypothesis strategies shared by every test module (one place, as attrs does it)."""

from __future__ import annotations

from hypothesis import strategies as st

from ledger.canonical import INT_MAX, INT_MIN

__all__ = ["json_objects", "json_values", "user_event_types"]

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=INT_MIN, max_value=INT_MAX)
    | st.text(max_size=40)
)
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4)
    ),
    max_leaves=12,
)
json_objects = st.dictionaries(st.text(max_size=12), json_values, max_size=6)
user_event_types = st.from_regex(r"\A[a-z][a-z0-9_]{0,10}\.[a-z][a-z0-9_]{0,10}\Z").filter(
    lambda t: not t.startswith(("ledger.", "key.", "blob.", "registry.", "selfverify.", "token."))
)
