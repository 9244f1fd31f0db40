"""Files in an S3-compatible object store, through aiobotocore (botocore's asynchronous client).

A file of one CHUNK or less is one PutObject; a larger one a multipart upload of parts of
PART bytes, completed only once the whole stream is in, and aborted on any failure, so a key
holds a whole file or nothing. Downloads stream the object's body. Uploads a dying process
left open are aborted by remove_abandoned.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterable, AsyncIterator, Iterable
from datetime import datetime, timedelta, timezone
from typing import Any

from aiobotocore.session import get_session
from botocore.config import Config as BotoConfig
from botocore.exceptions import ClientError

from core.config import Config
from vaultapi.storage import CHUNK, FileMissing, FileStore, rechunked

__all__ = ["PART", "S3Store"]

#: bytes of one part of a multipart upload: S3's minimum for every part but the last, and what
#: one upload holds in memory (with botocore's copy of it while it is sent)
PART = 5 * CHUNK
#: keys one DeleteObjects call may name
_DELETE_BATCH = 1000


def _missing(error: ClientError) -> bool:
    return error.response.get("Error", {}).get("Code") in ("NoSuchKey", "404", "NotFound")


class S3Store(FileStore):
    def __init__(self, client: Any, exit_stack: contextlib.AsyncExitStack, bucket: str) -> None:
        self.client = client
        self._exit_stack = exit_stack
        self.bucket = bucket

    @classmethod
    async def open(cls, config: Config) -> S3Store:
        secret = config.s3_secret_access_key.reveal() if config.s3_secret_access_key else None
        stack = contextlib.AsyncExitStack()
        client = await stack.enter_async_context(get_session().create_client(
            "s3", region_name=config.s3_region, endpoint_url=config.s3_endpoint_url,
            aws_access_key_id=config.s3_access_key_id, aws_secret_access_key=secret,
            config=BotoConfig(s3={"addressing_style": "path"}, retries={"max_attempts": 3})))
        assert config.s3_bucket is not None
        return cls(client, stack, config.s3_bucket)

    async def close(self) -> None:
        await self._exit_stack.aclose()

    async def put(self, key: str, chunks: AsyncIterable[bytes | memoryview], max_size: int) -> int:
        if await self._exists(key):
            raise FileExistsError(key)
        parts = rechunked(chunks, PART, max_size)
        first = await anext(parts)
        try:
            second = await anext(parts)
        except StopAsyncIteration:
            await self.client.put_object(Bucket=self.bucket, Key=key, Body=bytes(first))
            return len(first)
        upload = await self.client.create_multipart_upload(Bucket=self.bucket, Key=key)
        upload_id = upload["UploadId"]
        try:
            done = []
            size = 0
            number = 1
            for part in (first, second):
                done.append(await self._part(key, upload_id, number, part))
                size, number = size + len(part), number + 1
            async for part in parts:
                done.append(await self._part(key, upload_id, number, part))
                size, number = size + len(part), number + 1
            await self.client.complete_multipart_upload(
                Bucket=self.bucket, Key=key, UploadId=upload_id, MultipartUpload={"Parts": done})
            return size
        except BaseException:
            await asyncio.shield(self.client.abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload_id))
            raise

    async def _part(self, key: str, upload_id: str, number: int, data: bytearray) -> dict[str, Any]:
        reply = await self.client.upload_part(Bucket=self.bucket, Key=key, UploadId=upload_id,
                                              PartNumber=number, Body=bytes(data))
        return {"PartNumber": number, "ETag": reply["ETag"]}

    async def _exists(self, key: str) -> bool:
        try:
            await self.size(key)
        except FileMissing:
            return False
        return True

    async def size(self, key: str) -> int:
        try:
            head = await self.client.head_object(Bucket=self.bucket, Key=key)
        except ClientError as error:
            if _missing(error):
                raise FileMissing(key) from None
            raise
        return int(head["ContentLength"])

    async def get(self, key: str) -> AsyncIterator[bytes]:
        try:
            reply = await self.client.get_object(Bucket=self.bucket, Key=key)
        except ClientError as error:
            if _missing(error):
                raise FileMissing(key) from None
            raise
        async with reply["Body"] as body:
            while chunk := await body.read(CHUNK):
                yield chunk

    async def delete(self, keys: Iterable[str]) -> None:
        keys = list(keys)
        for start in range(0, len(keys), _DELETE_BATCH):
            batch = keys[start:start + _DELETE_BATCH]
            await self.client.delete_objects(
                Bucket=self.bucket, Delete={"Objects": [{"Key": key} for key in batch], "Quiet": True})

    async def remove_abandoned(self, older_than_seconds: float) -> int:
        before = datetime.now(timezone.utc) - timedelta(seconds=older_than_seconds)
        removed = 0
        paginator = self.client.get_paginator("list_multipart_uploads")
        async for page in paginator.paginate(Bucket=self.bucket):
            for upload in page.get("Uploads", []):
                if upload["Initiated"] < before:
                    await self.client.abort_multipart_upload(
                        Bucket=self.bucket, Key=upload["Key"], UploadId=upload["UploadId"])
                    removed += 1
        return removed
