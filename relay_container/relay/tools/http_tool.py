"""HTTP tools: the model's arguments POSTed to the operator's endpoint, signed.

The contract (docs/tools.md, for users writing an endpoint):

- ``POST <url>`` with ``Content-Type: application/json`` and the body
  ``{"tool", "call_id", "arguments", "bot_id", "session_id"}``;
- signed the Standard Webhooks way (https://www.standardwebhooks.com/): headers
  ``webhook-id`` (``msg_<call_id>``), ``webhook-timestamp`` (Unix seconds) and
  ``webhook-signature`` = ``v1,`` + base64(HMAC-SHA256(secret, ``{id}.{timestamp}.{body}``))
  with the ``whsec_`` secret's decoded bytes, so ``standardwebhooks.Webhook(secret).verify``
  (or ``svix``) checks it;
- a 2xx answer with a JSON body of at most ``max_response_bytes`` is the tool's result;
  anything else (other status, not JSON, too big, too slow) becomes a tool error the
  model can talk about.

The URL is the operator's (agent.yaml), never the model's or a client's; redirects are
not followed, so an answer cannot send the signed request elsewhere. Nothing here logs
the secret, the signature or the body.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from typing import Any, Final

import httpx

from relay.tools.errors import ToolFailure
from relay.tools.signing import decode_secret, sign
from relay.tools.spec import HttpTool

USER_AGENT: Final = "recall-voice-agent-relay"


class HttpToolRunner:
    """Runs the HTTP tools of one relay process over one connection pool."""

    def __init__(
        self,
        signing_secret: str,
        *,
        clock: Callable[[], float] = time.time,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        """Sign with ``signing_secret`` (``whsec_…``; raises ValueError when malformed)."""
        self._key = decode_secret(signing_secret)
        self._clock = clock
        self._http = httpx.AsyncClient(
            follow_redirects=False,
            transport=transport,
            headers={"User-Agent": USER_AGENT},
            # No proxy or CA settings from the environment: config is read in config.py.
            trust_env=False,
        )

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._http.aclose()

    async def run(
        self,
        spec: HttpTool,
        *,
        call_id: str,
        arguments: Mapping[str, Any],
        bot_id: str | None,
        session_id: str,
    ) -> Any:
        """POST the call to ``spec.url``; return the endpoint's JSON answer.

        Raises:
            ToolFailure: any answer but a bounded 2xx JSON one, or no answer in time.
        """
        body = json.dumps(
            {
                "tool": spec.name,
                "call_id": call_id,
                "arguments": dict(arguments),
                "bot_id": bot_id,
                "session_id": session_id,
            },
            separators=(",", ":"),
            ensure_ascii=False,
        ).encode()
        msg_id = f"msg_{call_id}"
        timestamp = int(self._clock())
        headers = {
            "Content-Type": "application/json",
            "Accept": "application/json",
            "webhook-id": msg_id,
            "webhook-timestamp": str(timestamp),
            "webhook-signature": sign(self._key, msg_id, timestamp, body),
        }
        try:
            async with self._http.stream(
                "POST",
                str(spec.url),
                content=body,
                headers=headers,
                timeout=spec.timeout_seconds,
            ) as response:
                if not response.is_success:
                    raise ToolFailure(
                        f"the {spec.name} service answered {response.status_code}"
                        + (" (a redirect, not followed)" if response.is_redirect else "")
                    )
                raw = bytearray()
                async for chunk in response.aiter_bytes():
                    raw += chunk
                    if len(raw) > spec.max_response_bytes:
                        raise ToolFailure(
                            f"the {spec.name} service answered more than "
                            f"{spec.max_response_bytes} bytes"
                        )
        except httpx.TimeoutException:
            raise ToolFailure(
                f"the {spec.name} service took longer than {spec.timeout_seconds:g} s"
            ) from None
        except httpx.HTTPError as exc:
            raise ToolFailure(
                f"the {spec.name} service could not be reached ({type(exc).__name__})"
            ) from None
        try:
            return json.loads(bytes(raw))
        except (ValueError, RecursionError):
            raise ToolFailure(
                f"the {spec.name} service answered something that is not JSON"
            ) from None
