"""gRPC-Web framing for tests that speak to the edge the way a browser does.

A gRPC-Web body is a sequence of frames: one flag byte, a 4-byte big-endian length, then the
payload. Flag 0x00 is a message, 0x80 the trailer frame (HTTP/1-style "name: value" lines). An
error before any message may come back "trailers-only": grpc-status in the HTTP headers and no
body (HTTP 200 from a service; 4xx/5xx when Envoy answers itself, e.g. no healthy replica).
`application/grpc-web-text` is the same bytes in base64.
"""

from __future__ import annotations

import base64
import struct
from collections.abc import Mapping
from dataclasses import dataclass, field

CONTENT_TYPE = "application/grpc-web+proto"
TEXT_CONTENT_TYPE = "application/grpc-web-text"
# What a browser client (grpc-web, Connect) sends beside the body.
REQUEST_HEADERS = {"content-type": CONTENT_TYPE, "x-grpc-web": "1", "accept": CONTENT_TYPE}

_HEADER = struct.Struct(">BI")
_MESSAGE = 0x00
_COMPRESSED = 0x01
_TRAILERS = 0x80


class FramingError(ValueError):
    """The body is not well-formed gRPC-Web."""


@dataclass
class Reply:
    """A decoded gRPC-Web response."""

    messages: list[bytes] = field(default_factory=list)
    trailers: dict[str, str] = field(default_factory=dict)

    @property
    def status(self) -> int:
        """grpc-status as an int (from the trailer frame, or the headers if trailers-only)."""
        if "grpc-status" not in self.trailers:
            raise FramingError("no grpc-status in the trailers or the headers")
        return int(self.trailers["grpc-status"])

    @property
    def message(self) -> str:
        return self.trailers.get("grpc-message", "")


def frame(message: bytes) -> bytes:
    """One uncompressed message frame: what a unary or server-streaming call sends."""
    return _HEADER.pack(_MESSAGE, len(message)) + message


def encode_text(body: bytes) -> bytes:
    return base64.b64encode(body)


def parse(body: bytes, headers: Mapping[str, str] | None = None, *, text: bool = False) -> Reply:
    """Split a response body into messages and trailers. `headers` supplies grpc-status when
    the server answered trailers-only."""
    if text:
        body = base64.b64decode(body)
    reply = Reply()
    if headers is not None:
        for name in ("grpc-status", "grpc-message"):
            if name in headers:
                reply.trailers[name] = headers[name]
    offset = 0
    while offset < len(body):
        if len(body) - offset < _HEADER.size:
            raise FramingError(f"truncated frame header at byte {offset}")
        flags, length = _HEADER.unpack_from(body, offset)
        offset += _HEADER.size
        payload = body[offset : offset + length]
        if len(payload) != length:
            raise FramingError(f"frame at byte {offset} says {length} bytes, has {len(payload)}")
        offset += length
        if flags & _TRAILERS:
            reply.trailers.update(_parse_trailers(payload))
        elif flags & _COMPRESSED:
            raise FramingError("compressed frames are not supported here")
        else:
            reply.messages.append(payload)
    return reply


def _parse_trailers(payload: bytes) -> dict[str, str]:
    trailers: dict[str, str] = {}
    for line in payload.decode("ascii").split("\r\n"):
        if not line:
            continue
        name, sep, value = line.partition(":")
        if not sep:
            raise FramingError(f"malformed trailer line {line!r}")
        trailers[name.strip().lower()] = value.strip()
    return trailers
