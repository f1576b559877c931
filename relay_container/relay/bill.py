"""The bounded bill's configuration: a session's limits, the price table, and what usage costs.

``bill:`` in agent.yaml (``relay_container/agent.yaml``) sets the operator's limits on a
session: minutes in the call (counted from the session's first start, across re-attach,
rollover and handover), model tokens (``total_tokens`` summed over every ``response.done``)
and an estimated cost in US dollars from ``bill.prices`` (per model, per 1M tokens; the
published figures of 2026-12-03 are built in; docs/bill.md). A bot's overlay may lower a limit,
never raise it (:func:`narrowed`). Pure: the meter that applies them is
``relay.usage_meter``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from pydantic import BaseModel, ConfigDict, Field, model_validator

#: Longest call a limit may allow (a week): beyond, a typo, not a meeting.
MAX_MINUTES: Final = 7 * 24 * 60
MAX_TOKENS: Final = 10**12
MAX_COST_USD: Final = 1_000_000.0
#: Usage fields the meter sums (stored names of ``relay.response_usage.USAGE_FIELDS``).
PRICED_FIELDS: Final = (
    "input_text_tokens",
    "input_audio_tokens",
    "input_image_tokens",
    "input_cached_text_tokens",
    "input_cached_audio_tokens",
    "input_cached_image_tokens",
    "output_text_tokens",
    "output_audio_tokens",
)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


_Price = Field(ge=0.0, le=10_000.0)


class ModelPrice(_Strict):
    """US dollars per 1M tokens of one model (``cached`` = input read from the cache)."""

    text_input: float = _Price
    text_cached_input: float = _Price
    text_output: float = _Price
    audio_input: float = _Price
    audio_cached_input: float = _Price
    audio_output: float = _Price
    image_input: float = Field(default=0.0, ge=0.0, le=10_000.0)
    image_cached_input: float = Field(default=0.0, ge=0.0, le=10_000.0)

    def cost(self, usage: Mapping[str, int]) -> float:
        """The estimated cost in US dollars of ``usage`` (stored usage field names)."""

        def n(name: str) -> int:
            return max(0, usage.get(name, 0))

        # Cached tokens are a subset of input tokens: bill them at the cached rate only.
        text_cached, audio_cached = n("input_cached_text_tokens"), n("input_cached_audio_tokens")
        image_cached = n("input_cached_image_tokens")
        dollars = (
            max(0, n("input_text_tokens") - text_cached) * self.text_input
            + text_cached * self.text_cached_input
            + max(0, n("input_audio_tokens") - audio_cached) * self.audio_input
            + audio_cached * self.audio_cached_input
            + max(0, n("input_image_tokens") - image_cached) * self.image_input
            + image_cached * self.image_cached_input
            + n("output_text_tokens") * self.text_output
            + n("output_audio_tokens") * self.audio_output
        )
        return dollars / 1_000_000


class BillLimits(_Strict):
    """What one session may use; ``None``: no limit of that kind."""

    max_minutes: float | None = Field(default=None, gt=0, le=MAX_MINUTES)
    max_tokens: int | None = Field(default=None, gt=0, le=MAX_TOKENS)
    max_cost_usd: float | None = Field(default=None, gt=0, le=MAX_COST_USD)

    @property
    def any(self) -> bool:
        """Whether any limit is set."""
        return not (
            self.max_minutes is None and self.max_tokens is None and self.max_cost_usd is None
        )


#: OpenAI's published prices, US dollars per 1M tokens, read 2026-12-03 (docs/bill.md):
#: text in / cached / out, audio in / cached / out, image in / cached.
PRICES_READ_ON: Final = "2026-12-03"
_GEN2: Final = (4.00, 0.40, 24.00, 32.00, 0.40, 64.00, 5.00, 0.50)
_PUBLISHED: Final[dict[str, tuple[float, ...]]] = {
    "gpt-realtime-2.1": _GEN2,
    "gpt-realtime-2": _GEN2,
    "gpt-realtime-2.1-mini": (0.60, 0.06, 2.40, 10.00, 0.30, 20.00, 0.80, 0.08),
    "gpt-realtime-1.5": (4.00, 0.40, 16.00, 32.00, 0.40, 64.00, 5.00, 0.50),
}
_PRICE_FIELDS: Final = (
    "text_input",
    "text_cached_input",
    "text_output",
    "audio_input",
    "audio_cached_input",
    "audio_output",
    "image_input",
    "image_cached_input",
)


def published_prices() -> dict[str, ModelPrice]:
    """The built-in price table (the same as the shipped agent.yaml's)."""
    return {
        model: ModelPrice(**dict(zip(_PRICE_FIELDS, figures, strict=True)))
        for model, figures in _PUBLISHED.items()
    }


class Bill(BillLimits):
    """``bill:`` in agent.yaml: the limits, how the agent leaves, and the price table.

    On by default (the limits of the shipped agent.yaml): set a limit to ``null`` to
    have none of that kind.
    """

    max_minutes: float | None = Field(default=120.0, gt=0, le=MAX_MINUTES)
    max_tokens: int | None = Field(default=5_000_000, gt=0, le=MAX_TOKENS)
    max_cost_usd: float | None = Field(default=20.0, gt=0, le=MAX_COST_USD)

    #: Tell the model this many minutes before the minutes limit (0: never).
    warn_minutes_before: float = Field(default=2.0, ge=0, le=60)
    #: What the model is told to do when a limit is reached.
    goodbye: str = Field(
        default=(
            "Your time in this meeting is up. Say a short, friendly goodbye in one sentence "
            "and nothing else."
        ),
        min_length=1,
        max_length=2000,
    )
    #: Longest wait for the goodbye to be spoken before the bot leaves anyway.
    goodbye_timeout_seconds: float = Field(default=15.0, gt=0, le=120)
    #: After the goodbye's ``response.done``: time for the page to play what it buffered.
    goodbye_linger_seconds: float = Field(default=3.0, ge=0, le=30)
    #: Recall's own hard cap (``automatic_leave.in_call_recording_timeout``) is the minutes
    #: limit plus this margin, so a bot leaves even if the relay could not make it.
    hard_cap_margin_minutes: float = Field(default=5.0, ge=1, le=120)
    #: US dollars per 1M tokens, per model (docs/bill.md).
    prices: dict[str, ModelPrice] = Field(default_factory=published_prices, max_length=64)

    @model_validator(mode="after")
    def _priced(self) -> Bill:
        if self.max_cost_usd is not None and not self.prices:
            raise ValueError("max_cost_usd needs bill.prices (per model, per 1M tokens)")
        if any(not 1 <= len(name) <= 128 for name in self.prices):
            raise ValueError("each prices key is a model name of 1-128 characters")
        return self

    def price_of(self, model: str) -> ModelPrice | None:
        """The price of ``model``: its own entry, else the longest entry it begins with
        (a dated snapshot of a priced model), else the dearest entry (never under-count)."""
        if model in self.prices:
            return self.prices[model]
        prefixes = [name for name in self.prices if model.startswith(name)]
        if prefixes:
            return self.prices[max(prefixes, key=len)]
        if not self.prices:
            return None
        return max(self.prices.values(), key=lambda p: p.audio_output + p.text_output)


def narrowed(operator: Bill, bot: BillLimits) -> list[str]:
    """Problems with a bot's limits under the operator's: a bot may lower a limit, never
    raise or remove it. Each problem names the key."""
    problems = []
    for name in ("max_minutes", "max_tokens", "max_cost_usd"):
        ours, theirs = getattr(operator, name), getattr(bot, name)
        if ours is not None and theirs is not None and theirs > ours:
            problems.append(f"bill.{name}: {theirs:g} is above the operator's limit of {ours:g}")
    if bot.max_cost_usd is not None and not operator.prices:
        problems.append("bill.max_cost_usd: the operator's agent config has no bill.prices")
    return problems
