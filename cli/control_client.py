"""The control API as the CLI's ``--via-api`` uses it: SigV4-signed HTTP, one-line errors.

Requests are signed with botocore's ``SigV4Auth`` (service ``execute-api``) using the
caller's ordinary AWS credentials (profile, environment, SSO), which API Gateway's IAM
authorizer checks; the caller needs ``execute-api:Invoke`` on the API (the stack's
``ControlApiInvokePolicyArn``), and no table access, Recall key or token secret at all.
Answers are the control API's JSON; an error answer becomes a ``CliError`` carrying the
API's own message. Credentials are never logged or echoed.
"""

from __future__ import annotations

import json
from typing import Any, Final
from urllib.parse import urlencode, urlsplit

import httpx
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest

from cli.errors import CliError, ConfigError

SERVICE: Final = "execute-api"


class ControlClient:
    """Signed calls to one control API base URL (``https://…/v1``)."""

    def __init__(
        self,
        base_url: str,
        *,
        region: str,
        credentials: Any,
        timeout: float = 35.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        """Sign for ``region`` with ``credentials`` (botocore credentials)."""
        if not base_url.startswith(("https://", "http://")):
            raise ConfigError(f"control API URL {base_url!r} is not http(s)")
        if credentials is None:
            raise ConfigError("no AWS credentials to sign control API requests with")
        self.base_url = base_url.rstrip("/")
        self._signer = SigV4Auth(credentials, SERVICE, region)
        self._http = httpx.Client(timeout=timeout, transport=transport, trust_env=False)

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

    def __enter__(self) -> ControlClient:
        """Use as a context manager that closes the pool."""
        return self

    def __exit__(self, *exc: object) -> None:
        """Close the pool."""
        self.close()

    # Operations: the same answers as the direct commands' --json output

    def create(self, body: dict[str, Any], idempotency_key: str | None = None) -> Any:
        """``POST /bots``."""
        headers = {"idempotency-key": idempotency_key} if idempotency_key else {}
        return self.call("POST", "/bots", body=body, headers=headers)

    def leave(self, bot_id: str) -> Any:
        """``POST /bots/{id}/leave``."""
        return self.call("POST", f"/bots/{_segment(bot_id)}/leave")

    def show(self, bot_id: str) -> Any:
        """``GET /bots/{id}``."""
        return self.call("GET", f"/bots/{_segment(bot_id)}")

    def bots(self, limit: int, days: int) -> Any:
        """``GET /bots``."""
        return self.call("GET", "/bots", query={"limit": limit, "days": days})["bots"]

    def transcript(self, bot_id: str) -> Any:
        """``GET /bots/{id}/transcript``."""
        return self.call("GET", f"/bots/{_segment(bot_id)}/transcript")["turns"]

    def notes(self, bot_id: str) -> Any:
        """``GET /bots/{id}/notes``."""
        return self.call("GET", f"/bots/{_segment(bot_id)}/notes")["notes"]

    def minutes(self, bot_id: str) -> Any:
        """``GET /bots/{id}/minutes``."""
        return self.call("GET", f"/bots/{_segment(bot_id)}/minutes")

    # Private

    def call(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        query: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> Any:
        """Sign and send one request; the decoded JSON answer, or a ``CliError``."""
        url = self.base_url + path + (f"?{urlencode(query)}" if query else "")
        data = json.dumps(body).encode() if body is not None else b""
        all_headers = {"content-type": "application/json", **(headers or {})}
        request = AWSRequest(method=method, url=url, data=data, headers=all_headers)
        self._signer.add_auth(request)
        try:
            answer = self._http.request(
                method, url, content=data, headers=dict(request.headers.items())
            )
        except httpx.HTTPError as exc:
            host = urlsplit(url).hostname
            raise CliError(
                f"cannot reach the control API at {host} ({type(exc).__name__})"
            ) from None
        try:
            decoded = answer.json()
        except ValueError:
            decoded = None
        if answer.status_code >= 400:
            message = decoded.get("message") if isinstance(decoded, dict) else None
            raise CliError(
                f"control API answered {answer.status_code}: {message or answer.reason_phrase}"
            )
        return decoded


def _segment(value: str) -> str:
    from urllib.parse import quote

    return quote(value, safe="")
