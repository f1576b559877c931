"""A minimal Lambda runtime for the tests: one fresh process, the real handler, JSON lines.

Like Lambda's runtime interface client, it imports ``functions.webhooks.app:handler`` once
(the cold start) and then invokes it for each event. Each stdin line is
``{"event": <API Gateway HTTP API v2 event>, "request_id": "..."}``; each result is written
as one ``RESULT <json>`` line on stdout, between the handler's own log and EMF lines.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass


@dataclass
class LambdaContext:
    """The attributes of Lambda's context object that Powertools reads."""

    aws_request_id: str
    function_name: str = "recall-webhooks-test"
    function_version: str = "$LATEST"
    memory_limit_in_mb: int = 256
    invoked_function_arn: str = (
        "arn:aws:lambda:us-east-1:123456789012:function:recall-webhooks-test"
    )
    log_group_name: str = "/aws/lambda/recall-webhooks-test"
    log_stream_name: str = "2026/11/29/[$LATEST]0123456789abcdef"

    def get_remaining_time_in_millis(self) -> int:
        return 15_000


def main() -> None:
    """Import the handler, then serve invocations until stdin closes."""
    from functions.webhooks.app import handler

    for line in sys.stdin:
        request = json.loads(line)
        result = handler(request["event"], LambdaContext(request["request_id"]))
        print("RESULT " + json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
