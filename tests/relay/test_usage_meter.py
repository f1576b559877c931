"""UsageMeter and the bill's configuration, sans I/O: limits, prices, goodbye, hostile usage."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

from relay.agent import AgentConfig
from relay.bill import Bill, ModelPrice
from relay.errors import ConfigError
from relay.history import spent_of
from relay.overlay import merge, validate_overlay
from relay.usage_meter import Limit, MeterState, Spent, UsageMeter

PRICE_21 = {
    "text_input": 4.0,
    "text_cached_input": 0.4,
    "text_output": 24.0,
    "audio_input": 32.0,
    "audio_cached_input": 0.4,
    "audio_output": 64.0,
}


def done(usage: Any = None, *, goodbye: bool = False, **response: Any) -> bytes:
    body: dict[str, Any] = {"status": "completed", **response}
    if usage is not None:
        body["usage"] = usage
    if goodbye:
        body["metadata"] = {"relay": "goodbye"}
    return json.dumps({"type": "response.done", "response": body}).encode()


def usage(
    total: int, audio_out: int = 0, audio_in: int = 0, cached_audio: int = 0
) -> dict[str, Any]:
    return {
        "total_tokens": total,
        "input_tokens": audio_in,
        "output_tokens": audio_out,
        "input_token_details": {
            "audio_tokens": audio_in,
            "cached_tokens": cached_audio,
            "cached_tokens_details": {"audio_tokens": cached_audio},
        },
        "output_token_details": {"audio_tokens": audio_out},
    }


def state_of(meter: UsageMeter) -> MeterState:
    """The meter's state (a call, so a type checker does not keep an earlier narrowing)."""
    return meter.state


def test_minutes_limit_warns_then_says_goodbye_then_leaves_once() -> None:
    bill = Bill(max_minutes=10, warn_minutes_before=1, goodbye_linger_seconds=2)
    meter = UsageMeter(bill, "gpt-realtime-2.1", spent=Spent(), now=0.0)
    assert meter.deadline == 540.0
    warning = meter.tick(540.0, busy=False)
    assert warning.send is not None
    assert b'"role":"system"' in warning.send
    assert meter.deadline == 600.0
    step = meter.tick(600.0, busy=False)
    assert step.reached is Limit.MINUTES
    assert step.leave is None
    assert step.send is not None
    assert json.loads(step.send)["type"] == "response.create"
    assert meter.state is MeterState.SAYING_GOODBYE
    meter.response_done(done(usage(10), goodbye=True), 603.0, busy=False)
    assert state_of(meter) is MeterState.LINGERING
    assert meter.deadline == 605.0
    assert meter.tick(605.0, busy=False).leave is Limit.MINUTES
    assert meter.tick(700.0, busy=False).leave is None  # once
    assert meter.deadline == math.inf


def test_a_busy_model_finishes_its_answer_first_and_a_silent_one_is_left_anyway() -> None:
    meter = UsageMeter(Bill(max_tokens=100), "m", spent=Spent(), now=0.0)
    step = meter.response_done(done(usage(100)), 5.0, busy=True)
    assert step.reached is Limit.TOKENS
    assert step.send is None
    assert meter.state is MeterState.WAITING
    goodbye = meter.response_done(done(usage(1)), 6.0, busy=False)
    assert goodbye.send is not None
    assert b"goodbye" in goodbye.send
    # The goodbye never completes: the bound from the limit makes the bot leave.
    assert meter.tick(5.0 + Bill().goodbye_timeout_seconds, busy=False).leave is Limit.TOKENS


def test_cost_is_estimated_from_the_price_table_with_cached_input_at_its_rate() -> None:
    bill = Bill(max_cost_usd=1.0, prices={"gpt-realtime-2.1": ModelPrice(**PRICE_21)})
    meter = UsageMeter(bill, "gpt-realtime-2.1", spent=Spent(), now=0.0)
    # 10,000 output audio tokens at $64/1M = $0.64; 10,000 input audio of which 5,000 cached.
    meter.response_done(done(usage(20_000, 10_000, 10_000, 5_000)), 1.0, busy=False)
    assert meter.cost_usd == pytest.approx(0.64 + 0.16 + 0.002)
    assert meter.state is MeterState.METERING
    step = meter.response_done(done(usage(10_000, 5_000)), 2.0, busy=False)
    assert step.reached is Limit.COST


def test_an_unpriced_model_is_charged_at_the_dearest_price_a_snapshot_at_its_family() -> None:
    cheap = ModelPrice(**{k: v / 10 for k, v in PRICE_21.items()})
    bill = Bill(prices={"gpt-realtime-2.1": ModelPrice(**PRICE_21), "gpt-realtime-2.1-mini": cheap})
    assert bill.price_of("gpt-realtime-2.1-mini-2026-06-01") == cheap
    assert bill.price_of("some-new-model") == ModelPrice(**PRICE_21)


def test_spent_before_counts_against_the_limits() -> None:
    spent = Spent(seconds=590.0, usage={"total_tokens": 90, "bogus": 5, "output_audio_tokens": -1})
    meter = UsageMeter(Bill(max_minutes=10, max_tokens=100), "m", spent=spent, now=1000.0)
    assert meter.deadline == 1010.0
    assert meter.usage["total_tokens"] == 90
    assert meter.usage["output_audio_tokens"] == 0
    assert meter.response_done(done(usage(10)), 1001.0, busy=False).reached is Limit.TOKENS


def test_a_session_resumed_past_its_limit_leaves_without_a_second_goodbye() -> None:
    meter = UsageMeter(Bill(max_minutes=1), "m", spent=Spent(seconds=61.0), now=5.0)
    assert meter.deadline == 5.0
    step = meter.tick(5.0, busy=False)
    assert step.leave is Limit.MINUTES
    assert step.send is None


@pytest.mark.parametrize(
    "payload",
    [
        b"not json",
        b"[]",
        b'{"type":"response.done","response":"x"}',
        done({"total_tokens": -5}),
        done({"total_tokens": True}),
        done({"total_tokens": 10**12}),
        done({"total_tokens": "50"}),
        done({"total_tokens": 1.5}),
        done({"input_token_details": [1, 2]}),
        done("usage"),
        b'{"response":{"usage":' * 2000 + b"1" + b"}}" * 2000,
        b" " * (2 * 1024 * 1024),
    ],
)
def test_malformed_usage_is_ignored_and_counted(payload: bytes) -> None:
    meter = UsageMeter(Bill(max_tokens=10), "m", spent=Spent(), now=0.0)
    step = meter.response_done(payload, 1.0, busy=False)
    assert step.send is None
    assert step.reached is None
    assert meter.usage["total_tokens"] == 0
    assert meter.ignored >= 1


def test_spent_of_stored_connections_sums_usage_and_starts_at_the_first() -> None:
    items: list[dict[str, Any]] = [
        {"started_at": "2026-12-03T10:00:10.000000Z", "usage": {"total_tokens": 5}},
        {"started_at": "2026-12-03T10:00:00.000000Z", "usage": {"total_tokens": 7, "x": "y"}},
        {"started_at": 12, "usage": "nope"},
    ]
    first = 1_796_292_000.0  # 2026-12-03T10:00:00Z
    spent = spent_of(items, now=first + 30)
    assert spent.seconds == pytest.approx(30.0)
    assert spent.usage == {"total_tokens": 12}


# Configuration: errors name the key


@pytest.mark.parametrize(
    ("data", "key"),
    [
        ({"bill": {"max_minutes": -1}}, "bill.max_minutes"),
        ({"bill": {"max_minutes": 10**9}}, "bill.max_minutes"),
        ({"bill": {"max_tokens": "many"}}, "bill.max_tokens"),
        ({"bill": {"max_cost_usd": 5, "prices": {}}}, "bill"),
        ({"bill": {"surprise": 1}}, "bill.surprise"),
        ({"bill": {"prices": {"m": {"text_input": -1}}}}, "bill.prices.m.text_input"),
        ({"truncation": {"retention_ratio": 1.5}}, "truncation"),
        ({"truncation": "sometimes"}, "truncation"),
        ({"reasoning": {"effort": "max"}}, "reasoning.effort"),
        ({"transcription": {"model": "gpt-transcribe", "delay": "low"}}, "transcription"),
        ({"transcription": {"prompt": "Names: Ava"}}, "transcription"),
        ({"automatic_leave": {"waiting_room_timeout": 0}}, "automatic_leave.waiting_room_timeout"),
        ({"automatic_leave": {"silence_detection": {"timeout": -3}}}, "automatic_leave"),
        ({"automatic_leave": {"in_call_recording_timeout": 60}}, "automatic_leave"),
    ],
)
def test_agent_config_refuses_bad_bill_and_session_fields_naming_the_key(
    tmp_path: Any, data: dict[str, Any], key: str
) -> None:
    from relay.agent import load_agent_config

    path = tmp_path / "agent.json"
    path.write_text(json.dumps(data))
    with pytest.raises(ConfigError) as caught:
        load_agent_config(path)
    assert any(problem.startswith(f"AGENT_CONFIG {key}") for problem in caught.value.problems), (
        caught.value.problems
    )


def test_long_call_fields_render_into_the_one_session_update() -> None:
    agent = AgentConfig.model_validate(
        {
            "truncation": {"retention_ratio": 0.8, "post_instructions_tokens": 8000},
            "reasoning": {"effort": "low"},
            "transcription": {"model": "gpt-realtime-whisper", "delay": "minimal"},
        }
    )
    session = json.loads(agent.session_update())["session"]
    assert session["truncation"] == {
        "type": "retention_ratio",
        "retention_ratio": 0.8,
        "token_limits": {"post_instructions": 8000},
    }
    assert session["reasoning"] == {"effort": "low"}
    assert session["audio"]["input"]["transcription"] == {
        "model": "gpt-realtime-whisper",
        "delay": "minimal",
    }
    assert "bill" not in session
    assert "automatic_leave" not in session
    keywords = AgentConfig.model_validate(
        {"transcription": {"model": "gpt-transcribe", "keywords": ["Fargate"], "languages": ["en"]}}
    )
    assert keywords.session()["audio"]["input"]["transcription"]["keywords"] == ["Fargate"]
    assert AgentConfig.model_validate({"truncation": "disabled"}).session()["truncation"] == (
        "disabled"
    )


def test_a_bot_may_lower_its_limits_and_pick_its_turn_taking_never_raise_them() -> None:
    agent = AgentConfig.model_validate(
        {"bill": {"max_minutes": 60, "max_tokens": 1000}, "transcription": {}}
    )
    overlay = {
        "bill": {"max_minutes": 15},
        "turn_taking": {"mode": "addressed", "wake_phrases": ["Ava"]},
    }
    merged = merge(agent, validate_overlay(agent, overlay))
    assert (merged.bill.max_minutes, merged.bill.max_tokens) == (15, 1000)
    assert merged.turn_taking.mode == "addressed"
    with pytest.raises(ConfigError) as caught:
        validate_overlay(agent, {"bill": {"max_minutes": 61, "max_tokens": -1, "x": 1}})
    problems = " ".join(caught.value.problems)
    assert "overlay bill.max_tokens" in problems
    assert "overlay bill.x" in problems
    with pytest.raises(ConfigError, match=r"overlay bill\.max_minutes: 61 is above"):
        validate_overlay(agent, {"bill": {"max_minutes": 61}})
    locked = agent.model_copy(update={"bot_overridable": ("instructions",)})
    with pytest.raises(ConfigError, match=r"overlay turn_taking: locked"):
        validate_overlay(locked, {"turn_taking": {"mode": "manual"}})


def test_the_shipped_agent_yaml_and_the_built_in_defaults_bound_the_same_bill() -> None:
    """Bots created through the control API (no agent.yaml beside it) get the same bill."""
    from relay.agent import load_agent_config

    # The file itself (the relay package may be the compiled build, elsewhere).
    shipped = load_agent_config(Path(__file__).parents[2] / "relay_container" / "agent.yaml").bill
    assert shipped == Bill()
    assert (shipped.max_minutes, shipped.max_tokens, shipped.max_cost_usd) == (120, 5_000_000, 20)
    price = shipped.price_of("gpt-realtime-2.1")
    assert price is not None
    assert (price.audio_input, price.audio_cached_input, price.audio_output) == (32, 0.4, 64)
