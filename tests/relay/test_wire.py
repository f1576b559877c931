"""The hot-path frame codec against websockets' reference implementation and hostile bytes."""

from __future__ import annotations

import pytest
from websockets.frames import Frame, Opcode
from websockets.protocol import Protocol, Side

from relay import wire


def reference(opcode: Opcode, payload: bytes, *, mask: bool, fin: bool = True) -> bytes:
    return Frame(opcode, payload, fin).serialize(mask=mask)


@pytest.mark.parametrize("size", [0, 1, 125, 126, 65535, 65536, 200_000])
@pytest.mark.parametrize("masked", [True, False], ids=["client-frames", "server-frames"])
def test_frames_of_every_length_class_round_trip(size: int, masked: bool) -> None:
    """Frames websockets writes are read back whole, whatever the length encoding."""
    payload = bytes(i % 251 for i in range(size))
    reader = wire.FrameReader(masked=masked, max_size=1 << 20)
    frames, clean = reader.feed(reference(Opcode.TEXT, payload, mask=masked))
    assert frames == [(wire.TEXT, True, payload)]
    assert clean


def test_encode_is_what_websockets_reads() -> None:
    """Our frames parse with websockets' own parser (masked and not)."""
    for side, mask in ((Side.SERVER, True), (Side.CLIENT, False)):
        proto = Protocol(side, max_size=None)
        proto.receive_data(wire.encode(wire.TEXT, b"x" * 70_000, mask=mask))
        [frame] = proto.events_received()
        assert isinstance(frame, Frame)
        assert frame.data == b"x" * 70_000


def test_byte_by_byte_delivery_and_batches() -> None:
    """Frames split at every byte, or several in one chunk, come out the same, in order."""
    stream = b"".join(reference(Opcode.TEXT, f"m{i}".encode(), mask=True) for i in range(5))
    reader = wire.FrameReader(masked=True, max_size=1000)
    got = []
    for i in range(len(stream)):
        frames, _ = reader.feed(stream[i : i + 1])
        got.extend(frames)
    assert [p for _, _, p in got] == [f"m{i}".encode() for i in range(5)]
    frames, clean = wire.FrameReader(masked=True, max_size=1000).feed(stream)
    assert len(frames) == 5
    assert clean


def test_control_frames_make_a_chunk_unclean() -> None:
    """A ping inside a chunk means the chunk cannot be forwarded as it is."""
    chunk = reference(Opcode.TEXT, b"a", mask=False) + reference(Opcode.PING, b"p", mask=False)
    frames, clean = wire.FrameReader(masked=False, max_size=10).feed(chunk)
    assert [f[0] for f in frames] == [wire.TEXT, wire.PING]
    assert not clean


HOSTILE = [
    ("unmasked-client-frame", True, reference(Opcode.TEXT, b"a", mask=False), 1002),
    ("masked-server-frame", False, reference(Opcode.TEXT, b"a", mask=True), 1002),
    ("reserved-bit", True, bytes([0xC1, 0x80]) + b"\0\0\0\0", 1002),
    ("unknown-opcode", True, bytes([0x83, 0x80]) + b"\0\0\0\0", 1002),
    ("unknown-control-opcode", True, bytes([0x8B, 0x80]) + b"\0\0\0\0", 1002),
    ("fragmented-ping", True, bytes([0x09, 0x80]) + b"\0\0\0\0", 1002),
    ("long-ping", True, bytes([0x89, 0xFE, 0x00, 0x7E]), 1002),
    ("too-big-by-header", True, bytes([0x81, 0xFF]) + (1 << 40).to_bytes(8, "big"), 1009),
]


@pytest.mark.parametrize(
    ("masked", "data", "code"), [h[1:] for h in HOSTILE], ids=[h[0] for h in HOSTILE]
)
def test_broken_framing_is_refused_with_its_close_code(
    masked: bool, data: bytes, code: int
) -> None:
    """Framing errors raise FrameError with the RFC 6455 close code, before buffering."""
    with pytest.raises(wire.FrameError) as error:
        wire.FrameReader(masked=masked, max_size=1 << 20).feed(data)
    assert error.value.close_code == code


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        (b"", (1005, "")),
        (b"\x03\xe8", (1000, "")),
        (b"\x03\xe9bye", (1001, "bye")),
        (b"\x0f\xa0beta", (4000, "beta")),
    ],
    ids=["empty", "normal", "going-away", "private"],
)
def test_close_frames_parse(payload: bytes, expected: tuple[int, str]) -> None:
    """Close codes and reasons are read as RFC 6455 §7.1.5 says."""
    assert wire.parse_close(payload) == expected


@pytest.mark.parametrize(
    "payload",
    [b"\x03", b"\x03\xed", b"\x00\x00", b"\x03\xe8\xff"],
    ids=["one-byte", "1005-on-wire", "zero", "reason-not-utf8"],
)
def test_bad_close_frames_are_refused(payload: bytes) -> None:
    """Close frames that break §5.5.1 / §7.4 raise FrameError."""
    with pytest.raises(wire.FrameError):
        wire.parse_close(payload)


def test_close_reason_is_cut_to_fit_on_a_character_boundary() -> None:
    """Long reasons are cut to 123 bytes without splitting a UTF-8 character."""
    payload = wire.close_payload(1011, "é" * 100)
    assert len(payload) <= 125
    payload[2:].decode()


def test_a_large_frame_in_many_chunks_is_assembled_once() -> None:
    """A 4 MiB frame arriving in 4 KiB chunks comes out whole, and only at its end."""
    payload = bytes(i % 253 for i in range(4 * 2**20))
    stream = reference(Opcode.TEXT, payload, mask=False) + reference(
        Opcode.TEXT, b"next", mask=False
    )
    reader = wire.FrameReader(masked=False, max_size=8 * 2**20)
    got = []
    for i in range(0, len(stream), 4096):
        frames, _ = reader.feed(stream[i : i + 4096])
        got.extend(frames)
    assert [p for _, _, p in got] == [payload, b"next"]
