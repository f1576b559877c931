"""The token usage of a ``response.done``: which fields are summed, and how, with no I/O.

A connection's record (``relay.record_items``) sums the usage of every ``response.done``
it sees into its ``CONN#`` item under these stored names; the bill (``relay.bill``) reads
them back. A value that is not a plain non-negative int, or is absurdly large, is not
summed: event content never breaks a record.
"""

from __future__ import annotations

from typing import Any, Final, TypeGuard

#: ``response.done`` usage fields summed per connection: stored name → path in ``usage``.
USAGE_FIELDS: Final[tuple[tuple[str, tuple[str, ...]], ...]] = (
    ("total_tokens", ("total_tokens",)),
    ("input_tokens", ("input_tokens",)),
    ("output_tokens", ("output_tokens",)),
    ("input_text_tokens", ("input_token_details", "text_tokens")),
    ("input_audio_tokens", ("input_token_details", "audio_tokens")),
    ("input_image_tokens", ("input_token_details", "image_tokens")),
    ("input_cached_tokens", ("input_token_details", "cached_tokens")),
    # The cached breakdown prices a resumed session's earlier usage (relay.bill).
    ("input_cached_text_tokens", ("input_token_details", "cached_tokens_details", "text_tokens")),
    (
        "input_cached_audio_tokens",
        ("input_token_details", "cached_tokens_details", "audio_tokens"),
    ),
    (
        "input_cached_image_tokens",
        ("input_token_details", "cached_tokens_details", "image_tokens"),
    ),
    ("output_text_tokens", ("output_token_details", "text_tokens")),
    ("output_audio_tokens", ("output_token_details", "audio_tokens")),
)
#: A single response's token count above this is not believed (and not summed).
MAX_TOKENS_PER_RESPONSE: Final = 10**9


def add_usage(total: dict[str, int], usage: dict[str, Any]) -> None:
    """Add one response's ``usage`` object to ``total`` (stored name → tokens)."""
    for name, path in USAGE_FIELDS:
        value = _dig(usage, path)
        if _is_count(value):
            total[name] = total.get(name, 0) + value


def _is_count(value: object) -> TypeGuard[int]:
    """A plain int (not a bool) a single response could have used."""
    return (
        isinstance(value, int)
        and not isinstance(value, bool)
        and 0 <= value <= MAX_TOKENS_PER_RESPONSE
    )


def _dig(mapping: dict[str, Any], path: tuple[str, ...]) -> object:
    value: object = mapping
    for key in path:
        if not isinstance(value, dict):
            return None
        value = value.get(key)
    return value
