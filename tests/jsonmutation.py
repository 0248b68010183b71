"""A hypothesis strategy for malformed JSON documents: a valid document with 1 to N fields
replaced by arbitrary JSON values or removed. Shared by the input tests of every reader."""

from __future__ import annotations

import copy
from typing import Any

from hypothesis import strategies as st


def json_values(leaves: list[str], *, nan: bool = False) -> st.SearchStrategy[Any]:
    """Arbitrary JSON, with `leaves` (strings that mean something to the reader) mixed in;
    `nan` adds NaN and infinities (what a lenient JSON parser lets through)."""
    leaf = st.none() | st.booleans() | st.integers(-10**6, 10**6) | st.floats(
        allow_nan=nan, allow_infinity=nan) | st.text(max_size=8) | st.sampled_from(leaves)
    return st.recursive(leaf, lambda inner: st.lists(inner, max_size=3)
                        | st.dictionaries(st.text(max_size=8) | st.sampled_from(leaves), inner,
                                          max_size=3), max_leaves=8)


def json_paths(value: Any, at: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every path into a JSON document, the root `()` first."""
    out = [at]
    if isinstance(value, dict):
        for k, v in value.items():
            out += json_paths(v, (*at, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            out += json_paths(v, (*at, i))
    return out


@st.composite
def mutated(draw: st.DrawFn, base: Any, values: st.SearchStrategy[Any],
            max_changes: int = 4) -> Any:
    doc: Any = copy.deepcopy(base)
    for _ in range(draw(st.integers(1, max_changes))):
        path = draw(st.sampled_from(json_paths(doc)))
        # a copy: a drawn list or dict may be a shared object (sampled_from), and a later change
        # inside it would otherwise make the document contain itself
        new = copy.deepcopy(draw(values))
        if not path:
            doc = new
            continue
        parent = doc
        for step in path[:-1]:
            parent = parent[step]
        if draw(st.booleans()) and isinstance(parent, dict):
            del parent[path[-1]]
        else:
            parent[path[-1]] = new
    return doc
