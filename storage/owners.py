"""Session owner items: which relay task holds a live session, so meeting events can reach it.

One item per session, beside its connections and turns (``SESSION#<session_id>`` /
``OWNER``): the internal address (``host:port``) of the relay process whose session of that
subject is live, the process's random instance id, and when it claimed the session (epoch
milliseconds). Recall's real-time events for the session land on any relay task; the task
that does not hold the session reads this item and forwards them there
(docs/design/meeting-routing.md).

Writers (the relay only), both conditional, both with the low-level request this module
renders (:func:`claim_request`, :func:`release_request`):

- **claim**: ``PutItem`` when the session starts (or resumes after a handover) on a
  process, only if no owner is recorded or the recorded claim is not newer
  (``since_ms``), so a slow write of the task a session left cannot overwrite the task it
  moved to;
- **release**: ``UpdateItem`` removing ``address`` and ``instance`` when the last live
  session of the subject on that process ends, only if that process (``instance``) still
  owns it: a task that handed the session over never erases its successor's claim. The
  item itself stays (with its ``since_ms``) until it expires, so a claim delayed from
  before the release cannot bring a finished owner back; and the relay needs no
  ``DeleteItem`` permission.

An owner that died without releasing leaves a stale item; readers treat the address as a
hint (a refused or unreachable owner is re-read, and the events are bounded), and
``expires_at`` removes it once no session could still be live.

It refuses to decide when to claim or release, or to read a clock: callers pass times.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final, TypedDict

from storage import schema

OWNER_SK: Final = "OWNER"
#: ``host:port``: an IPv4 address or a DNS name, then a port. Longer is malformed.
MAX_ADDRESS_CHARS: Final = 260
#: Attribute compared by the claim's condition.
SINCE_ATTRIBUTE: Final = "since_ms"
INSTANCE_ATTRIBUTE: Final = "instance"


class SessionOwnerItem(TypedDict):
    """``SESSION#<session_id>`` / ``OWNER``: the relay process holding the session."""

    pk: str
    sk: str
    session_id: str
    address: str
    instance: str
    since_ms: int
    expires_at: int


@dataclass(frozen=True, slots=True)
class SessionOwner:
    """A parsed owner item."""

    session_id: str
    address: str
    instance: str
    since_ms: int


def owner_key(session_id: str) -> dict[str, str]:
    """The key of ``session_id``'s owner item (``Table`` resource form)."""
    return {schema.PARTITION_KEY: schema.session_pk(session_id), schema.SORT_KEY: OWNER_SK}


def is_valid_address(address: str) -> bool:
    """Whether ``address`` is ``host:port`` with a port 1-65535 and a plain host."""
    host, sep, port = address.rpartition(":")
    return (
        bool(sep)
        and 0 < len(address) <= MAX_ADDRESS_CHARS
        and bool(host)
        and all(c.isalnum() or c in ".-" for c in host)
        and port.isdigit()
        and 0 < int(port) <= 65535
    )


def owner_item(owner: SessionOwner, *, expires_at: int) -> SessionOwnerItem:
    """The item recording ``owner``, expiring at ``expires_at`` (epoch seconds).

    Raises:
        ValueError: the session id or the address cannot be stored.
    """
    if not schema.is_valid_id(owner.session_id):
        raise ValueError("the session id cannot be part of a key")
    if not is_valid_address(owner.address):
        raise ValueError("the owner address must be host:port")
    return {
        "pk": schema.session_pk(owner.session_id),
        "sk": OWNER_SK,
        "session_id": owner.session_id,
        "address": owner.address,
        "instance": owner.instance,
        SINCE_ATTRIBUTE: owner.since_ms,
        schema.TTL_ATTRIBUTE: expires_at,
    }


def claim_request(owner: SessionOwner, *, expires_at: int) -> dict[str, Any]:
    """``PutItem`` arguments (``Table`` resource form): claim unless a newer claim exists."""
    return {
        "Item": dict(owner_item(owner, expires_at=expires_at)),
        "ConditionExpression": "attribute_not_exists(#pk) OR #since <= :since",
        "ExpressionAttributeNames": {"#pk": schema.PARTITION_KEY, "#since": SINCE_ATTRIBUTE},
        "ExpressionAttributeValues": {":since": owner.since_ms},
    }


def release_request(session_id: str, instance: str) -> dict[str, Any]:
    """``UpdateItem`` arguments (``Table`` resource form): forget the owner's address, only
    if ``instance`` owns it."""
    return {
        "Key": owner_key(session_id),
        "UpdateExpression": "REMOVE #address, #instance",
        "ConditionExpression": "#instance = :instance",
        "ExpressionAttributeNames": {"#address": "address", "#instance": INSTANCE_ATTRIBUTE},
        "ExpressionAttributeValues": {":instance": instance},
    }


def owner_from_item(item: dict[str, Any]) -> SessionOwner | None:
    """The owner recorded in a stored item (numbers already plain); None when malformed."""
    session_id, address = item.get("session_id"), item.get("address")
    instance, since = item.get("instance"), item.get(SINCE_ATTRIBUTE)
    if not (isinstance(session_id, str) and isinstance(address, str)):
        return None
    if not (isinstance(instance, str) and instance and isinstance(since, int)):
        return None
    if not is_valid_address(address):
        return None
    return SessionOwner(session_id=session_id, address=address, instance=instance, since_ms=since)
