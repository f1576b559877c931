"""One minutes job, run to the end exactly once per bot: claim, build, store, deliver.

:class:`MinutesJobRunner.run` takes a validated queue message (``functions.minutes.trigger``):

1. A :class:`SessionCheck` finds the session's bot (``SESSION#<id>`` / ``BOT``) and goes
   on only if every connection of the session has ended, the newest at least
   ``grace_seconds`` ago (a later connection's end brings its own check).
2. Claim the bot's ``MINUTES`` job (``storage.minutes``: conditional, leased). Not
   claimed means another run built it, or holds a live lease: then only an undelivered
   result is (re)delivered.
3. Build from the stored turns and notes with the summarizer, and store the minutes,
   with their memory-key copy, in one transaction conditional on the claim.
4. Deliver to the bot's own endpoint (``minutes_url`` on its session, checked against
   private addresses by ``functions.minutes.url_guard``) or else the stack's
   (``functions.minutes.delivery``), and mark it.

A failure in 3 releases the claim and raises (the queue retries); a crash leaves the
lease to run out (shorter than the queue's visibility timeout, so the retry can claim).
A failure in 4 raises after the minutes are stored; the retry skips to 4.

A bot asked to leave (trigger ``leave_requested``, ``storage.leaving``) runs 2-3 in a
worker thread bounded by ``leave_bound_seconds``, then, built or not, hands over to
``functions.minutes.leave`` (the minutes in the chat, then ``leave_call``), and delivers
last; a build that failed or overran is retried by the queue as usual, without a second
leave. A :class:`LeaveDeadline` message makes the bot leave if no job got there first.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

from functions.minutes.delivery import DeliveryRefusedError, WebhookDelivery
from functions.minutes.leave import MeetingExit
from functions.minutes.store import MinutesStore
from functions.minutes.summarizer import Minutes, Summarizer
from functions.minutes.trigger import BotJob, LeaveDeadline, SessionCheck
from functions.minutes.url_guard import UnsafeUrlError, check_public
from storage import minutes, times

logger = logging.getLogger(__name__)


class Outcome(StrEnum):
    """What one run did."""

    BUILT = "built"  # built and stored (and delivered, if configured)
    DELIVERED = "delivered"  # was built before; delivered now
    ALREADY_DONE = "already_done"  # built (and delivered) before: nothing to do
    IN_PROGRESS = "in_progress"  # another run holds a live claim
    NOT_ENDED = "not_ended"  # the session still has, or just had, a connection
    NO_BOT = "no_bot"  # a session created for no bot (e.g. the dev page)
    REFUSED = "refused"  # the endpoint refused the delivery for good (or is unsafe)


@dataclass(frozen=True, slots=True)
class MinutesJobRunner:
    """Everything a run needs; tests build it with fakes for the clock only."""

    store: MinutesStore
    summarizer: Summarizer
    delivery: WebhookDelivery | None = None
    lease_seconds: int = 300
    grace_seconds: int = 120
    clock: Callable[[], datetime] = lambda: datetime.now(UTC)
    #: Signs deliveries to a bot's own ``minutes_url`` (the stack's delivery key).
    signing_secret: str | None = None
    #: Refuses a bot's own URL that is not public (tests on loopback pass a no-op).
    url_guard: Callable[[str], None] = check_public
    #: Chat and leave for bots asked to leave (None: this stack cannot call Recall).
    meeting_exit: MeetingExit | None = None
    #: How long a leaving bot waits for its minutes before it leaves without them.
    leave_bound_seconds: float = 60.0

    def run(self, message: BotJob | SessionCheck | LeaveDeadline) -> Outcome:
        """Run one job request to the end (see the module docstring)."""
        if isinstance(message, LeaveDeadline):
            if self.meeting_exit is not None:
                built = self._stored_minutes(message.bot_id, wait_until=0.0)
                self.meeting_exit.leave(message.bot_id, built, by="deadline")
            return Outcome.ALREADY_DONE
        if isinstance(message, BotJob) and message.trigger == "leave_requested":
            return self._leave_after_minutes(message.bot_id)
        if isinstance(message, SessionCheck):
            pointer = self.store.session_bot(message.session_id)
            if pointer is None:
                return Outcome.NO_BOT
            if not self._session_ended(message.session_id):
                return Outcome.NOT_ENDED
            return self._bot(pointer["bot_id"], "session_ended")
        return self._bot(message.bot_id, message.trigger)

    # Private

    def _session_ended(self, session_id: str) -> bool:
        latest: datetime | None = None
        for connection in self.store.connections(session_id):
            ended = connection.get("ended_at")
            moment = times.parse_time(ended) if isinstance(ended, str) else None
            if moment is None:
                return False  # still open (or never closed cleanly: its end will come)
            latest = moment if latest is None or moment > latest else latest
        return latest is not None and latest <= self.clock() - timedelta(seconds=self.grace_seconds)

    def _bot(self, bot_id: str, trigger: str) -> Outcome:
        built = self._claim_and_build(bot_id, trigger)
        if built is None:
            return self._after_claimed_elsewhere(bot_id)
        if isinstance(built, Outcome):
            return built
        return self._deliver(bot_id, built, Outcome.BUILT)

    def _claim_and_build(self, bot_id: str, trigger: str) -> dict[str, Any] | Outcome | None:
        """The delivery data if this run built the minutes; ``None`` if claimed elsewhere."""
        claim_id = uuid.uuid4().hex
        now = self.clock()
        if not self.store.claim(
            bot_id=bot_id,
            claim_id=claim_id,
            trigger=trigger,
            now=now,
            lease_seconds=self.lease_seconds,
        ):
            return None
        try:
            built = self._build(bot_id, claim_id)
        except Exception:
            self.store.release(bot_id=bot_id, claim_id=claim_id)
            raise
        if built is None:  # lease taken over while we built: the other run owns it
            return Outcome.IN_PROGRESS
        return built

    def _leave_after_minutes(self, bot_id: str) -> Outcome:
        """Build (bounded in time), post in the chat and leave, then deliver."""
        started = time.monotonic()
        pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="minutes-build")
        future = pool.submit(self._claim_and_build, bot_id, "leave_requested")
        pool.shutdown(wait=False)  # a hung summarizer must not hold the leave
        built: dict[str, Any] | Outcome | None = Outcome.IN_PROGRESS
        failure: Exception | None = None
        try:
            built = future.result(timeout=self.leave_bound_seconds)
        except FutureTimeout:
            logger.warning(
                "minutes too slow: the bot leaves without them", extra={"bot_id": bot_id}
            )
            # Retried by the queue: by then the build finished (delivered by the retry) or
            # its lease ran out (the retry builds).
            failure = TimeoutError("the minutes took longer than the leave bound")
        except Exception as exc:  # the build failed: leave anyway, then let the queue retry
            failure = exc
        deadline = started + self.leave_bound_seconds
        minutes_now = self._stored_minutes(bot_id, wait_until=deadline if built is None else 0.0)
        if self.meeting_exit is not None:
            try:
                self.meeting_exit.leave(bot_id, minutes_now, by="job")
            except Exception as exc:  # deliver what was built, then let the queue retry
                failure = failure or exc
        if built is None:
            outcome = self._after_claimed_elsewhere(bot_id)
        elif isinstance(built, Outcome):
            outcome = built
        else:
            outcome = self._deliver(bot_id, built, Outcome.BUILT)
        if failure is not None:
            raise failure
        return outcome

    def _stored_minutes(self, bot_id: str, *, wait_until: float) -> Minutes | None:
        """The bot's built minutes; polls until ``wait_until`` (monotonic) while building."""
        while True:
            job = self.store.job(bot_id)
            if job is not None and "minutes" in job:
                return Minutes.model_validate_json(job["minutes"])
            if job is None or time.monotonic() >= wait_until:
                return None
            time.sleep(0.5)

    def _build(self, bot_id: str, claim_id: str) -> dict[str, Any] | None:
        state = self.store.bot_state(bot_id) or {}
        session_id = state.get("session_id")
        session_id = session_id if isinstance(session_id, str) and session_id else None
        pointer = self.store.session_bot(session_id) if session_id else None
        memory_key = pointer.get("memory_key") if pointer else None
        lines = self.store.lines(bot_id, session_id)
        result: Minutes = self.summarizer.summarize(lines)
        built_at = self.clock()
        minutes_json = result.model_dump_json()
        if not self.store.store_built(
            bot_id=bot_id,
            claim_id=claim_id,
            minutes_json=minutes_json,
            generated_by=self.summarizer.name,
            built_at=built_at,
            memory_key=memory_key,
        ):
            return None
        logger.info(
            "minutes built",
            extra={"bot_id": bot_id, "lines": len(lines), "generated_by": self.summarizer.name},
        )
        return delivery_data(
            bot_id=bot_id,
            minutes_json=minutes_json,
            generated_by=self.summarizer.name,
            built_at=times.key_time(built_at),
            memory_key=memory_key,
        )

    def _after_claimed_elsewhere(self, bot_id: str) -> Outcome:
        job = self.store.job(bot_id)
        if job is None or job.get("job_state") == minutes.BUILDING:
            return Outcome.IN_PROGRESS
        if job.get("job_state") == minutes.DELIVERED:
            return Outcome.ALREADY_DONE
        if "delivery_status" in job:  # refused for good before: not sent again
            return Outcome.ALREADY_DONE
        data = delivery_data(
            bot_id=bot_id,
            minutes_json=str(job.get("minutes", "{}")),
            generated_by=str(job.get("generated_by", "")),
            built_at=str(job.get("built_at", "")),
            memory_key=job.get("memory_key"),
        )
        return self._deliver(bot_id, data, Outcome.DELIVERED)

    def _delivery_for(self, bot_id: str) -> WebhookDelivery | None:
        """The bot's own endpoint if it has one (and this stack can sign), else the stack's."""
        session_id = (self.store.bot_state(bot_id) or {}).get("session_id")
        pointer = self.store.session_bot(session_id) if isinstance(session_id, str) else None
        url = pointer.get("minutes_url") if pointer else None
        if not isinstance(url, str) or not url:
            return self.delivery
        if self.signing_secret is None:
            logger.error("a bot's minutes URL, but no key to sign with", extra={"bot_id": bot_id})
            return self.delivery
        self.url_guard(url)
        return WebhookDelivery(url, self.signing_secret)

    def _deliver(self, bot_id: str, data: dict[str, Any], done: Outcome) -> Outcome:
        try:
            delivery = self._delivery_for(bot_id)
        except UnsafeUrlError as exc:
            logger.error("minutes not delivered", extra={"bot_id": bot_id, "reason": str(exc)})
            self.store.refused(bot_id=bot_id, at=self.clock(), status=0)
            return Outcome.REFUSED
        if delivery is None:
            return Outcome.ALREADY_DONE if done is Outcome.DELIVERED else done
        try:
            status = delivery.deliver(bot_id, data)
        except DeliveryRefusedError as exc:
            logger.error(
                "minutes refused by the endpoint", extra={"bot_id": bot_id, "status": exc.status}
            )
            self.store.refused(bot_id=bot_id, at=self.clock(), status=exc.status)
            return Outcome.REFUSED
        self.store.mark_delivered(bot_id=bot_id, at=self.clock(), status=status)
        return done


def delivery_data(
    *,
    bot_id: str,
    minutes_json: str,
    generated_by: str,
    built_at: str,
    memory_key: object,
) -> dict[str, Any]:
    """The ``data`` of a ``minutes.ready`` delivery."""
    return {
        "bot_id": bot_id,
        "minutes": Minutes.model_validate_json(minutes_json).model_dump(),
        "generated_by": generated_by,
        "built_at": built_at,
        "memory_key": memory_key if isinstance(memory_key, str) else None,
    }
