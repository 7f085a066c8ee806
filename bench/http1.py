"""A minimal HTTP/1.1 keep-alive client for the JSON scenarios.

The driver shares the box's two cores with the stack it measures, so a general client (httpx
spends hundreds of µs per request) would measure itself. Requests are pre-built bytes; one
connection serves one caller, one request at a time, as a browser tab would.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass


class HttpStatusError(Exception):
    """The edge answered with a non-2xx status; the name carries the status for the report."""

    def __init__(self, status: int, body: bytes) -> None:
        super().__init__(f"HTTP {status}: {body[:200]!r}")
        self.status = status


@dataclass(frozen=True)
class HttpTarget:
    """One request a scenario sends, before it is encoded for a client (ours or httpload)."""

    method: str
    url: str  # the path for build_request; the whole URL for httpload
    headers: dict[str, str]
    body: bytes


@dataclass(frozen=True)
class UniqueField:
    """A string field httpload appends to every gRPC request (grpc:// targets): `prefix` and
    the call's index, so each call is a new request (an idempotency key) while the body is
    built once."""

    number: int
    prefix: str


def build_request(method: str, host: str, path: str, headers: dict[str, str], body: bytes) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}", f"Content-Length: {len(body)}"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


class Http1Connection:
    def __init__(self, host: str, port: int) -> None:
        self._host = host
        self._port = port
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def send(self, request: bytes, timeout_s: float) -> bytes:
        """The response body; raises HttpStatusError on a non-2xx answer."""
        try:
            return await asyncio.wait_for(self._exchange(request), timeout_s)
        except (OSError, TimeoutError, asyncio.IncompleteReadError):
            await self.close()
            raise

    async def _exchange(self, request: bytes) -> bytes:
        if self._writer is None:
            self._reader, self._writer = await asyncio.open_connection(self._host, self._port)
        assert self._reader is not None
        self._writer.write(request)
        head = await self._reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        length = 0
        chunked = close = False
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            lowered = name.strip().lower()
            if lowered == b"content-length":
                length = int(value)
            elif lowered == b"transfer-encoding" and b"chunked" in value.lower():
                chunked = True
            elif lowered == b"connection" and value.strip().lower() == b"close":
                close = True
        if chunked:
            body = await self._read_chunks(self._reader)
        else:
            body = await self._reader.readexactly(length) if length else b""
        if close:
            await self.close()
        if not 200 <= status < 300:
            raise HttpStatusError(status, body)
        return body

    @staticmethod
    async def _read_chunks(reader: asyncio.StreamReader) -> bytes:
        parts: list[bytes] = []
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            if size == 0:
                await reader.readuntil(b"\r\n")  # no trailers are sent; the final CRLF
                return b"".join(parts)
            parts.append(await reader.readexactly(size + 2))
            parts[-1] = parts[-1][:-2]

    async def close(self) -> None:
        writer, self._writer, self._reader = self._writer, None, None
        if writer is not None:
            writer.close()
