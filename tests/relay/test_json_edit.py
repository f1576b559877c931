"""relay.json_edit: removing a member or elements changes nothing else, at any layout."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from relay import json_edit

_leaves = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8)
)
_values = st.recursive(
    _leaves,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3)
    ),
    max_leaves=10,
)
_layouts = st.sampled_from(
    [
        {"separators": (",", ":")},
        {"separators": (", ", ": ")},
        {"indent": 2},
        {"indent": "\t", "ensure_ascii": False},
    ]
)


@settings(max_examples=300, deadline=None, database=None)
@given(
    obj=st.dictionaries(st.text(max_size=4), _values, min_size=1, max_size=5),
    layout=_layouts,
    data=st.data(),
)
def test_remove_member_removes_exactly_that_member(
    obj: dict[str, Any], layout: dict[str, Any], data: st.DataObject
) -> None:
    """The result parses to the object without the key, whatever the spacing and escapes."""
    key = data.draw(st.sampled_from(sorted(obj)))
    raw = json.dumps(obj, **layout).encode()
    edited = json_edit.remove_member(raw, [key])
    assert edited is not None
    expected = dict(obj)
    del expected[key]
    assert json.loads(edited) == expected
    for other, value in expected.items():
        # Every other member's bytes are in the output as they were written.
        member = json.dumps({other: value}, **layout)[1:-1].strip()
        if "\n" not in member:
            assert member.encode() in edited


@settings(max_examples=200, deadline=None, database=None)
@given(items=st.lists(_values, min_size=1, max_size=6), data=st.data(), layout=_layouts)
def test_remove_elements_keeps_the_others_in_order(
    items: list[Any], data: st.DataObject, layout: dict[str, Any]
) -> None:
    """Dropping some elements of an array leaves the others, in order."""
    drop = data.draw(st.sets(st.integers(0, len(items) - 1)))
    raw = json.dumps(items, **layout).encode()
    edited = json_edit.remove_elements(raw, sorted(drop))
    assert json.loads(edited) == [v for i, v in enumerate(items) if i not in drop]


def test_nested_path_and_absent_paths() -> None:
    """A dotted path reaches into nested objects; an absent one changes nothing (None)."""
    raw = b'{"a": {"b": {"c": 1, "d": 2.50}}, "e": "\\"}"}'
    assert (
        json_edit.remove_member(raw, ["a", "b", "c"]) == b'{"a": {"b": {"d": 2.50}}, "e": "\\"}"}'
    )
    assert json_edit.remove_member(raw, ["a", "x"]) is None
    assert json_edit.remove_member(raw, ["e", "x"]) is None
