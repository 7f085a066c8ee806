"""Object storage over the S3 API: the one async client (aiobotocore), opened from settings.

Two clients share one session. `internal` talks to S3_URL for the services' own calls (create,
list, complete and abort multipart uploads, head, delete). URLs for clients are presigned
against S3_PUBLIC_URL (locally the edge), path-style, since the signature covers the host and
the path the client will send; signing is local and makes no request.

Nothing here hand-signs a request: botocore does SigV4 for every call and every URL.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiobotocore.session import get_session
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from mesh.config import MeshSettings
from mesh.errors import Unavailable

# Connection-level failures (refused, reset, timed out) are outages; ClientError is an answer.
_CONFIG = dict(
    signature_version="s3v4",
    s3={"addressing_style": "path"},
    connect_timeout=2,
    read_timeout=30,
    retries={"max_attempts": 3, "mode": "standard"},
    max_pool_connections=32,
)


@dataclass(frozen=True)
class StoredPart:
    number: int
    size: int
    etag: str


@dataclass(frozen=True)
class ObjectHead:
    size: int
    content_type: str
    etag: str = ""


def error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def not_found(exc: ClientError) -> bool:
    return error_code(exc) in ("404", "NoSuchKey", "NoSuchUpload", "NotFound")


class ObjectStore:
    def __init__(self, internal: Any, public: Any, bucket: str) -> None:
        self._s3 = internal
        self._public = public
        self.bucket = bucket

    async def create_multipart(self, key: str, content_type: str) -> str:
        reply = await self._call(
            self._s3.create_multipart_upload(Bucket=self.bucket, Key=key, ContentType=content_type)
        )
        return str(reply["UploadId"])

    async def part_urls(
        self, key: str, upload_id: str, numbers: Iterable[int], expires_seconds: int
    ) -> dict[int, str]:
        """Presigned PUT URL of each part number (signing is local: no request is made)."""
        urls = {}
        for number in numbers:
            urls[number] = await self._public.generate_presigned_url(
                "upload_part",
                Params={
                    "Bucket": self.bucket,
                    "Key": key,
                    "UploadId": upload_id,
                    "PartNumber": number,
                },
                ExpiresIn=expires_seconds,
            )
        return urls

    async def list_parts(self, key: str, upload_id: str) -> list[StoredPart]:
        """Every part stored so far (pages through the listing); NoSuchUpload raises."""
        parts: list[StoredPart] = []
        marker = 0
        for _ in range(10_000):
            reply = await self._call(
                self._s3.list_parts(
                    Bucket=self.bucket, Key=key, UploadId=upload_id, PartNumberMarker=marker
                )
            )
            parts += [
                StoredPart(int(p["PartNumber"]), int(p["Size"]), str(p["ETag"]))
                for p in reply.get("Parts", [])
            ]
            if not reply.get("IsTruncated"):
                break
            marker = int(reply["NextPartNumberMarker"])
        return parts

    async def complete_multipart(
        self, key: str, upload_id: str, parts: list[tuple[int, str]]
    ) -> None:
        await self._call(
            self._s3.complete_multipart_upload(
                Bucket=self.bucket,
                Key=key,
                UploadId=upload_id,
                MultipartUpload={"Parts": [{"PartNumber": n, "ETag": e} for n, e in parts]},
            )
        )

    async def abort_multipart(self, key: str, upload_id: str) -> None:
        """Idempotent: an upload already gone counts as aborted."""
        try:
            await self._call(
                self._s3.abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload_id)
            )
        except ClientError as exc:
            if not not_found(exc):
                raise

    async def head(self, key: str) -> ObjectHead | None:
        try:
            reply = await self._call(self._s3.head_object(Bucket=self.bucket, Key=key))
        except ClientError as exc:
            if not_found(exc):
                return None
            raise
        return ObjectHead(
            int(reply["ContentLength"]),
            str(reply.get("ContentType", "")),
            str(reply.get("ETag", "")).strip('"'),
        )

    async def get_bytes(self, key: str) -> bytes | None:
        try:
            reply = await self._call(self._s3.get_object(Bucket=self.bucket, Key=key))
        except ClientError as exc:
            if not_found(exc):
                return None
            raise
        async with reply["Body"] as body:
            return bytes(await body.read())

    async def put_bytes(self, key: str, data: bytes, content_type: str) -> None:
        await self._call(
            self._s3.put_object(Bucket=self.bucket, Key=key, Body=data, ContentType=content_type)
        )

    async def upload_file(self, key: str, path: str, content_type: str) -> None:
        data = await asyncio.to_thread(Path(path).read_bytes)
        await self.put_bytes(key, data, content_type)

    async def delete(self, key: str) -> None:
        await self._call(self._s3.delete_object(Bucket=self.bucket, Key=key))

    async def delete_prefix(self, prefix: str) -> int:
        deleted = 0
        paginator = self._s3.get_paginator("list_objects_v2")
        async for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix):
            keys = [{"Key": o["Key"]} for o in page.get("Contents", [])]
            if keys:
                await self._call(
                    self._s3.delete_objects(Bucket=self.bucket, Delete={"Objects": keys})
                )
                deleted += len(keys)
        return deleted

    async def list_keys(self, prefix: str) -> list[str]:
        keys: list[str] = []
        paginator = self._s3.get_paginator("list_objects_v2")
        async for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix):
            keys += [str(o["Key"]) for o in page.get("Contents", [])]
        return keys

    async def internal_get_url(self, key: str, expires_seconds: int) -> str:
        """A GET URL on S3_URL for processes beside the store (ffprobe, the transcoder)."""
        return str(
            await self._s3.generate_presigned_url(
                "get_object",
                Params={"Bucket": self.bucket, "Key": key},
                ExpiresIn=expires_seconds,
            )
        )

    async def public_get_url(self, key: str, expires_seconds: int) -> str:
        """A GET URL for clients, through S3_PUBLIC_URL."""
        return str(
            await self._public.generate_presigned_url(
                "get_object",
                Params={"Bucket": self.bucket, "Key": key},
                ExpiresIn=expires_seconds,
            )
        )

    async def _call(self, awaitable: Any) -> Any:
        try:
            return await awaitable
        except ClientError:
            raise
        except (TimeoutError, BotoCoreError, OSError) as exc:
            raise Unavailable("object storage unavailable; retry shortly") from exc


@asynccontextmanager
async def open_objectstore(settings: MeshSettings) -> AsyncIterator[ObjectStore]:
    settings.require("s3_url", "s3_access_key", "s3_secret_key")
    session = get_session()
    credentials = {
        "aws_access_key_id": settings.s3_access_key,
        "aws_secret_access_key": settings.s3_secret_key,
        "region_name": settings.s3_region,
        "config": Config(**_CONFIG),  # type: ignore[arg-type]
    }
    async with AsyncExitStack() as stack:
        internal = await stack.enter_async_context(
            session.create_client("s3", endpoint_url=settings.s3_url, **credentials)
        )
        public = await stack.enter_async_context(
            session.create_client(
                "s3", endpoint_url=settings.s3_public_url or settings.s3_url, **credentials
            )
        )
        yield ObjectStore(internal, public, settings.s3_bucket)
