"""The stream wire format: serialize each event once, write its bytes to every stream.

JoinResponse and SubscribeResponse are both `repeated ServerEvent events = 1`, so a stream
message is a concatenation of frames (tag 0x0A, length, event bytes), and several events
coalesce into one message by concatenating their frames. The two streaming methods are
registered with an identity serializer, so grpc writes these bytes as they are.

Session events travel between pods (NATS) and sit in history (Valkey) as ServerEvent bytes
that start with the sequence field (tag 0x08, varint), written by the sequencer script, so a
pod reads an event's sequence without parsing it.
"""

from __future__ import annotations

from google.protobuf.duration_pb2 import Duration
from google.protobuf.timestamp_pb2 import Timestamp

from elearn.live.v1 import live_service_pb2 as pb

_FIELD1_BYTES = b"\x0a"
_FIELD1_VARINT = 0x08


def varint(n: int) -> bytes:
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def frame(event_bytes: bytes) -> bytes:
    """One ServerEvent as an element of the stream message's repeated field 1."""
    return _FIELD1_BYTES + varint(len(event_bytes)) + event_bytes


def sequenced(sequence: int, body: bytes) -> bytes:
    """The event bytes the sequencer produces: the sequence field first, then the body."""
    return bytes([_FIELD1_VARINT]) + varint(sequence) + body


def sequence_of(event_bytes: bytes) -> int:
    """The sequence of a sequenced event (see `sequenced`)."""
    if not event_bytes or event_bytes[0] != _FIELD1_VARINT:
        raise ValueError("not a sequenced event")
    value = shift = 0
    for byte in event_bytes[1:11]:
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value
        shift += 7
    raise ValueError("malformed sequence varint")


def now() -> Timestamp:
    ts = Timestamp()
    ts.GetCurrentTime()
    return ts


def seconds(value: float) -> Duration:
    d = Duration()
    d.FromMilliseconds(max(0, int(value * 1000)))
    return d


def private(session_id: str, **kind: object) -> bytes:
    """A framed private event (sequence 0): welcome, ack, notice or heartbeat."""
    event = pb.ServerEvent(session_id=session_id, server_time=now(), **kind)  # type: ignore[arg-type]
    return frame(event.SerializeToString())


def notice(session_id: str, kind: int, message: str, **fields: object) -> bytes:
    return private(session_id, notice=pb.Notice(kind=kind, message=message, **fields))  # type: ignore[arg-type]


def decode_message(data: bytes) -> list[pb.ServerEvent]:
    """Client side: the events of one stream message."""
    return list(pb.JoinResponse.FromString(data).events)
