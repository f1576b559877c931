"""Byte-exact edits of a JSON text: remove object members and array elements by span.

The policy removes a locked field from a client event without re-serializing the rest:
every value it keeps reaches the model as the client wrote it (a float such as
``12345678901234567890.5``, an escaped string, a lone surrogate escape, key order and
spacing inside the value). Only the separators between the members of an edited object
or array are rewritten, to a single comma.

The input must already be valid JSON (``events.loads_strict`` accepted it); this module
finds spans, it does not validate. It never recurses on the document's nesting (a
bracket counter skips nested values), so no input depth can exhaust the stack.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Final

_WS: Final = b" \t\r\n"
_OPEN: Final = frozenset(b"{[")
_CLOSE: Final = frozenset(b"}]")
_QUOTE: Final = ord('"')
_BACKSLASH: Final = ord("\\")
_SCALAR_END: Final = frozenset(b",}] \t\r\n")

#: One member of an object: its decoded key, where the member starts (its key's quote),
#: and where its value starts and ends (end exclusive).
Member = tuple[str, int, int, int]
#: One element of an array: where it starts and ends (end exclusive).
Element = tuple[int, int]


def _skip_ws(raw: bytes, i: int) -> int:
    while i < len(raw) and raw[i] in _WS:
        i += 1
    return i


def _string_end(raw: bytes, i: int) -> int:
    """Index just past the string whose opening quote is at ``i``."""
    i += 1
    while True:
        quote = raw.index(b'"', i)
        # The quote is escaped when an odd number of backslashes precede it.
        backslashes = 0
        j = quote - 1
        while raw[j] == _BACKSLASH:
            backslashes += 1
            j -= 1
        if backslashes % 2 == 0:
            return quote + 1
        i = quote + 1


def value_end(raw: bytes, i: int) -> int:
    """Index just past the JSON value that starts at ``i`` (no recursion on depth)."""
    first = raw[i]
    if first == _QUOTE:
        return _string_end(raw, i)
    if first not in _OPEN:
        while i < len(raw) and raw[i] not in _SCALAR_END:
            i += 1
        return i
    depth = 0
    while True:
        c = raw[i]
        if c == _QUOTE:
            i = _string_end(raw, i)
            continue
        if c in _OPEN:
            depth += 1
        elif c in _CLOSE:
            depth -= 1
            if depth == 0:
                return i + 1
        i += 1


def members(obj: bytes) -> list[Member]:
    """The members of the object ``obj`` (which starts with ``{`` and ends with ``}``)."""
    found: list[Member] = []
    i = _skip_ws(obj, 1)
    while obj[i] != ord("}"):
        key_end = _string_end(obj, i)
        key = json.loads(obj[i:key_end])
        colon = _skip_ws(obj, key_end)
        start = _skip_ws(obj, colon + 1)
        end = value_end(obj, start)
        found.append((key, i, start, end))
        i = _skip_ws(obj, end)
        if obj[i] == ord(","):
            i = _skip_ws(obj, i + 1)
    return found


def elements(array: bytes) -> list[Element]:
    """The elements of the array ``array`` (which starts with ``[`` and ends with ``]``)."""
    found: list[Element] = []
    i = _skip_ws(array, 1)
    while array[i] != ord("]"):
        end = value_end(array, i)
        found.append((i, end))
        i = _skip_ws(array, end)
        if array[i] == ord(","):
            i = _skip_ws(array, i + 1)
    return found


def _join(open_: bytes, parts: Sequence[bytes], close: bytes) -> bytes:
    return open_ + b",".join(parts) + close


def strip_value(raw: bytes) -> bytes:
    """``raw`` without the whitespace around the one JSON value it holds."""
    return raw.strip(_WS)


def remove_member(obj: bytes, path: Sequence[str]) -> bytes | None:
    """``obj`` without the member at ``path`` (keys of nested objects), or None if absent.

    Every other member keeps its bytes; only the separators of each object on the path
    are rewritten.
    """
    items = members(obj)
    for index, (key, _start, value_start, value_end_) in enumerate(items):
        if key != path[0]:
            continue
        if len(path) == 1:
            kept = [obj[s:e] for n, (_, s, _, e) in enumerate(items) if n != index]
            return _join(b"{", kept, b"}")
        if obj[value_start] != ord("{"):
            return None
        inner = remove_member(obj[value_start:value_end_], path[1:])
        if inner is None:
            return None
        return obj[:value_start] + inner + obj[value_end_:]
    return None


def replace_member_value(obj: bytes, key: str, edit: Callable[[bytes], bytes]) -> bytes:
    """``obj`` with the value of its member ``key`` replaced by ``edit(value)``."""
    for member_key, _, start, end in members(obj):
        if member_key == key:
            return obj[:start] + edit(obj[start:end]) + obj[end:]
    return obj


def remove_elements(array: bytes, drop: Sequence[int]) -> bytes:
    """``array`` without the elements at the indexes ``drop``; the others keep their bytes."""
    dropped = set(drop)
    kept = [array[s:e] for n, (s, e) in enumerate(elements(array)) if n not in dropped]
    return _join(b"[", kept, b"]")
