"""``python -m control_api.openapi``: print the control API's OpenAPI document.

The checked-in copy is ``docs/control-api.openapi.json``; a test keeps it equal to what
the app serves at ``/v1/openapi.json``.
"""

from __future__ import annotations

import json
import sys


def document() -> str:
    """The OpenAPI document as stable JSON."""
    from control_api.app import create_app

    return json.dumps(create_app().openapi(), indent=2, sort_keys=True) + "\n"


if __name__ == "__main__":
    sys.stdout.write(document())
