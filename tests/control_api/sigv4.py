"""API Gateway's IAM check, for the tests: an ASGI wrapper that verifies SigV4 signatures.

It recomputes each request's signature with botocore (an implementation independent of
how the client built its request) for the one test principal, over exactly the headers
the client said it signed, and answers 403 as API Gateway does when it does not match.
"""

from __future__ import annotations

import json
from typing import Any

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

ACCESS_KEY = "testing"
SECRET_KEY = "testing"


def verified(app: Any, region: str = "us-east-1") -> Any:
    """``app`` behind a SigV4 check for the test credentials."""
    signer = SigV4Auth(Credentials(ACCESS_KEY, SECRET_KEY), "execute-api", region)

    async def guarded(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await app(scope, receive, send)
            return
        body = b""
        more = True
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
        headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        if not _valid(signer, scope, headers, body):
            payload = json.dumps({"message": "Forbidden"}).encode()
            await send({"type": "http.response.start", "status": 403,
                        "headers": [(b"content-type", b"application/json")]})  # fmt: skip
            await send({"type": "http.response.body", "body": payload})
            return
        sent = False

        async def replay() -> dict[str, Any]:
            nonlocal sent
            if sent:
                message: dict[str, Any] = await receive()
                return message
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}

        await app(scope, replay, send)

    return guarded


def _valid(signer: SigV4Auth, scope: dict[str, Any], headers: dict[str, str], body: bytes) -> bool:
    authorization = headers.get("authorization", "")
    if not authorization.startswith("AWS4-HMAC-SHA256 "):
        return False
    parts = dict(p.strip().split("=", 1) for p in authorization[17:].split(",") if "=" in p)
    credential = parts.get("Credential", "")
    if not credential.startswith(f"{ACCESS_KEY}/") or "/execute-api/aws4_request" not in credential:
        return False
    signed = parts.get("SignedHeaders", "").split(";")
    query = scope.get("query_string", b"").decode()
    url = f"http://{headers.get('host', '')}{scope['path']}" + (f"?{query}" if query else "")
    request = AWSRequest(
        method=scope["method"], url=url, data=body, headers={h: headers.get(h, "") for h in signed}
    )
    request.context["timestamp"] = headers.get("x-amz-date", "")
    canonical = signer.canonical_request(request)
    string_to_sign = signer.string_to_sign(request, canonical)
    return signer.signature(string_to_sign, request) == parts.get("Signature")
