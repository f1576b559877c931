"""A bot's own minutes URL: delivered there, signed as the stack's are; private hosts refused."""

from __future__ import annotations

import uuid
from dataclasses import replace

from functions.minutes.delivery import WebhookDelivery
from functions.minutes.job import Outcome
from functions.minutes.trigger import BotJob
from storage import minutes
from tests.minutes.conftest import Endpoint, Pipeline, seed_meeting


def bot_with_url(pipeline: Pipeline, url: str) -> str:
    bot_id, session_id = str(uuid.uuid4()), str(uuid.uuid4())
    seed_meeting(pipeline.store, bot_id=bot_id, session_id=session_id)
    pipeline.store.put_session_bot(minutes.session_bot_item(session_id, bot_id, minutes_url=url))
    return bot_id


def test_a_bots_url_gets_its_minutes_signed_instead_of_the_stacks(
    pipeline: Pipeline, endpoint: Endpoint
) -> None:
    """The bot's endpoint verifies the signature (standardwebhooks); the stack's is not used."""
    unreachable = WebhookDelivery("http://127.0.0.1:9/never", endpoint.secret, attempts=1)
    runner = replace(
        pipeline.runner,
        delivery=unreachable,
        signing_secret=endpoint.secret,
        url_guard=lambda url: None,  # the test endpoint is on loopback
    )
    bot_id = bot_with_url(pipeline, endpoint.url)
    assert runner.run(BotJob(bot_id=bot_id, trigger="bot.done")) is Outcome.BUILT
    assert endpoint.accepted_ids() == [f"minutes_{bot_id}"]
    assert endpoint.rejected == 0
    assert endpoint.received[0]["payload"]["data"]["bot_id"] == bot_id
    job = pipeline.job(bot_id)
    assert job is not None
    assert job["job_state"] == "delivered"


def test_a_bots_private_url_is_refused_at_delivery(pipeline: Pipeline, endpoint: Endpoint) -> None:
    """With the real guard, a URL resolving to loopback gets nothing; recorded, not retried."""
    runner = replace(pipeline.runner, signing_secret=endpoint.secret)
    bot_id = bot_with_url(pipeline, endpoint.url.replace("http://", "https://"))
    assert runner.run(BotJob(bot_id=bot_id, trigger="bot.done")) is Outcome.REFUSED
    assert endpoint.received == []
    job = pipeline.job(bot_id)
    assert job is not None
    assert job["job_state"] == "built"
    assert job["delivery_status"] == 0
    # A later signal does not try again.
    assert runner.run(BotJob(bot_id=bot_id, trigger="bot.done")) is Outcome.ALREADY_DONE
    assert endpoint.received == []


def test_without_a_signing_key_the_stack_endpoint_is_used(
    pipeline: Pipeline, endpoint: Endpoint
) -> None:
    """No key to sign a bot's URL with: its minutes go where the stack's go."""
    runner = replace(pipeline.runner, signing_secret=None)
    bot_id = bot_with_url(pipeline, "https://hooks.example.com/m")
    assert runner.run(BotJob(bot_id=bot_id, trigger="bot.done")) is Outcome.BUILT
    assert endpoint.accepted_ids() == [f"minutes_{bot_id}"]
