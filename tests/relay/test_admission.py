"""Admission limits per process and per subject, and the session policy's locked fields."""

from __future__ import annotations

import json

import pytest

from relay.admission import Admission
from relay.errors import CapacityError, SubjectLimitError
from relay.policy import SessionPolicy


def test_limits_per_process_and_subject() -> None:
    """The process and each subject have their own ceiling; releasing frees places."""
    counts: list[int] = []
    admission = Admission(max_sessions=3, max_per_subject=2, on_change=counts.append)
    a1, a2 = admission.admit("a"), admission.admit("a")
    with pytest.raises(SubjectLimitError):
        admission.admit("a")
    admission.admit("b")
    with pytest.raises(CapacityError):
        admission.admit("c")
    a1.release()
    a1.release()  # idempotent
    admission.admit("c")
    a2.release()
    assert admission.held_by("a") == 0
    assert counts == [1, 2, 3, 2, 3, 2]


def test_zero_means_unlimited() -> None:
    """0 disables a limit."""
    admission = Admission(max_sessions=0, max_per_subject=0)
    for _ in range(1000):
        admission.admit("same")
    assert admission.active == 1000


def test_policy_removes_locked_paths_and_keeps_the_rest() -> None:
    """Locked dotted paths are removed from session.update and response.create."""
    policy = SessionPolicy(["instructions", "audio.output.voice"])
    raw = json.dumps(
        {
            "type": "session.update",
            "event_id": "e1",
            "session": {"instructions": "x", "audio": {"output": {"voice": "ash", "speed": 1.2}}},
        }
    )
    verdict = policy.apply("session.update", raw.encode())
    assert verdict.removed == ("instructions", "audio.output.voice")
    assert verdict.forward is not None
    assert json.loads(verdict.forward)["session"] == {"audio": {"output": {"speed": 1.2}}}
    verdict = policy.apply(
        "response.create", b'{"type":"response.create","response":{"instructions":"y"}}'
    )
    assert verdict.removed == ("instructions",)


def test_policy_leaves_other_events_untouched() -> None:
    """Events without locked fields, and other types, pass as the same bytes."""
    policy = SessionPolicy(["instructions"])
    raw = b'{"type":"session.update","session":{"type":"realtime"}}'
    assert policy.apply("session.update", raw).forward is raw
    assert policy.apply("input_audio_buffer.append", b"{}").forward == b"{}"
