"""The create-bot request we send to Recall, and the checks on what a user typed for it.

Owns the body of ``POST /api/v1/bot/``: the meeting URL (checked against the platforms
Output Media supports), the agent page as the bot's camera (``output_media.camera``,
``kind: webpage``), ``web_4_core`` on every platform, our session id and the bot's name
in the bot's metadata so every webhook and real-time event carries them back, the
real-time websocket endpoint that brings the meeting's participant, speech and chat events
to the relay (``recording_config.realtime_endpoints``, docs/recall-realtime.md), and
``automatic_leave`` from the agent config (``cli.persona.automatic_leave``). It builds
dictionaries; it sends nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from relay.meeting_events import EVENTS_PATH, SUBSCRIBED_EVENTS

#: Output Media runs on these platforms only (docs/recall.md).
PLATFORM_HOSTS: Final[dict[str, tuple[str, ...]]] = {
    "zoom": ("zoom.us", "zoomgov.com"),
    "google_meet": ("meet.google.com",),
    "microsoft_teams": ("teams.microsoft.com", "teams.live.com", "teams.cloud.microsoft"),
    "webex": ("webex.com",),
}
#: Recall's samples use 4 cores for Output Media; 1 core makes the agent's audio choppy.
VARIANT: Final = "web_4_core"
MAX_BOT_NAME_CHARS: Final = 100
MAX_METADATA_VALUE_CHARS: Final = 500


class InvalidInput(ValueError):
    """What the user typed cannot be sent; ``str(error)`` says why."""


def meeting_platform(url: str) -> str:
    """The Recall platform name of a meeting URL.

    Raises:
        InvalidInput: not an https URL on a platform Output Media supports.
    """
    parts = urlsplit(url.strip())
    host = (parts.hostname or "").lower()
    if parts.scheme != "https" or not host:
        raise InvalidInput(f"{url!r} is not an https meeting URL")
    for platform, domains in PLATFORM_HOSTS.items():
        if any(host == d or host.endswith("." + d) for d in domains):
            return platform
    supported = ", ".join(d for domains in PLATFORM_HOSTS.values() for d in domains)
    raise InvalidInput(f"{host} is not a supported meeting host ({supported})")


def parse_join_at(value: str, now: datetime) -> datetime:
    """An ISO 8601 time in the future (naive means UTC).

    Raises:
        InvalidInput: unparseable or not in the future.
    """
    try:
        when = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        raise InvalidInput(f"{value!r} is not an ISO 8601 time") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    if when <= now:
        raise InvalidInput(f"{value} is in the past")
    return when.astimezone(UTC)


def with_token(url: str, token: str) -> str:
    """The agent page ``url`` carrying ``token`` in its fragment (``#token=…``).

    Browsers never send a fragment to a server, so the token reaches no access log
    (CloudFront's, the load balancer's) on the way to the page; the page reads it, keeps
    it in sessionStorage and strips it from its address.
    """
    parts = urlsplit(url)
    fragment = [
        (k, v) for k, v in parse_qsl(parts.fragment, keep_blank_values=True) if k != "token"
    ]
    fragment.append(("token", token))
    return urlunsplit(parts._replace(fragment=urlencode(fragment)))


def events_url(page_url: str) -> str:
    """The relay's real-time events endpoint beside the agent page (same host: the stack's
    CloudFront serves the page, ``/v1/realtime`` and ``/recall/events/``)."""
    parts = urlsplit(page_url)
    scheme = "ws" if parts.scheme == "http" else "wss"
    return urlunsplit((scheme, parts.netloc, EVENTS_PATH, "", ""))


def without_token(url: str) -> str:
    """``url`` with no ``token`` in its query or fragment (how we print a page URL)."""
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k != "token"]
    fragment = [
        (k, v) for k, v in parse_qsl(parts.fragment, keep_blank_values=True) if k != "token"
    ]
    return urlunsplit(parts._replace(query=urlencode(query), fragment=urlencode(fragment)))


@dataclass(frozen=True, slots=True)
class BotSpec:
    """Everything a new bot is made of, as checked input."""

    meeting_url: str
    bot_name: str
    session_id: str
    page_url: str  # the agent page, carrying the token
    join_at: datetime | None = None
    persona: str | None = None
    #: Recall's ``automatic_leave`` object (None: Recall's defaults, up to an hour).
    automatic_leave: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        """Refuse what Recall would refuse, before asking it."""
        meeting_platform(self.meeting_url)
        if not self.bot_name.strip() or len(self.bot_name) > MAX_BOT_NAME_CHARS:
            raise InvalidInput(f"the bot name must be 1-{MAX_BOT_NAME_CHARS} characters")
        if self.persona is not None and not (
            0 < len(self.persona) <= MAX_METADATA_VALUE_CHARS and self.persona.isprintable()
        ):
            raise InvalidInput("the persona must be 1-500 printable characters")

    def request(self) -> dict[str, Any]:
        """The JSON body of ``POST /api/v1/bot/``."""
        metadata = {"session_id": self.session_id, "bot_name": self.bot_name}
        if self.persona is not None:
            metadata["persona"] = self.persona
        endpoint = {
            "type": "websocket",
            "url": events_url(self.page_url),
            "events": list(SUBSCRIBED_EVENTS),
        }
        body: dict[str, Any] = {
            "meeting_url": self.meeting_url.strip(),
            "bot_name": self.bot_name,
            "metadata": metadata,
            "output_media": {"camera": {"kind": "webpage", "config": {"url": self.page_url}}},
            "recording_config": {"realtime_endpoints": [endpoint]},
            "variant": dict.fromkeys(PLATFORM_HOSTS, VARIANT),
        }
        if self.join_at is not None:
            body["join_at"] = self.join_at.isoformat().replace("+00:00", "Z")
        if self.automatic_leave:
            body["automatic_leave"] = dict(self.automatic_leave)
        return body
