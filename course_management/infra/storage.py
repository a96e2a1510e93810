"""S3: presigned uploads (single PUT or multipart) and existence checks (aiobotocore)."""

from __future__ import annotations

import contextlib
from typing import Any

from aiobotocore.config import AioConfig
from aiobotocore.session import get_session
from botocore.exceptions import ClientError, HTTPClientError
from botocore.exceptions import ConnectionError as S3ConnectionError

from course_management.config import Settings
from course_management.domain.uploads import UploadPlan

# S3 cannot be reached (refused, timed out, dropped): the request answers 503.
UNAVAILABLE: tuple[type[BaseException], ...] = (S3ConnectionError, HTTPClientError)

URL_TTL_SECONDS = 3600


class ContentStore:
    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._stack = contextlib.AsyncExitStack()
        self._client: Any = None

    async def start(self) -> None:
        self._client = await self._stack.enter_async_context(
            get_session().create_client(
                "s3",
                endpoint_url=self._settings.s3_endpoint_url,
                region_name=self._settings.aws_region,
                aws_access_key_id=self._settings.aws_access_key_id,
                aws_secret_access_key=self._settings.aws_secret_access_key,
                # SigV4 everywhere (presigned URLs included), path-style addressing: what
                # S3 and S3-compatible servers all take.
                config=AioConfig(signature_version="s3v4", s3={"addressing_style": "path"}),
            )
        )

    async def stop(self) -> None:
        await self._stack.aclose()

    async def exists(self, key: str) -> bool:
        try:
            await self._client.head_object(Bucket=self._settings.s3_bucket, Key=key)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return False
            raise
        return True

    async def presign(self, plan: UploadPlan) -> dict[str, Any]:
        bucket = self._settings.s3_bucket
        body: dict[str, Any] = {
            "key": plan.key,
            "content_type": plan.content_type,
            "size_bytes": plan.size_bytes,
            "max_size_bytes": plan.max_size_bytes,
            "expires_in_seconds": URL_TTL_SECONDS,
        }
        if plan.part_size_bytes is None:
            url = await self._client.generate_presigned_url(
                "put_object",
                Params={
                    "Bucket": bucket,
                    "Key": plan.key,
                    "ContentType": plan.content_type,
                    "ContentLength": plan.size_bytes,
                },
                ExpiresIn=URL_TTL_SECONDS,
            )
            body["single"] = {
                "method": "PUT",
                "url": url,
                "headers": {"Content-Type": plan.content_type},
            }
            return body
        created = await self._client.create_multipart_upload(
            Bucket=bucket, Key=plan.key, ContentType=plan.content_type
        )
        upload_id = created["UploadId"]
        parts = []
        part_size = plan.part_size_bytes
        for number in range(1, plan.parts + 1):
            # Each part's exact length is signed, so the parts add up to the announced
            # size at most, and the storage refuses any other body.
            length = min(part_size, plan.size_bytes - (number - 1) * part_size)
            part_url = await self._client.generate_presigned_url(
                "upload_part",
                Params={
                    "Bucket": bucket,
                    "Key": plan.key,
                    "UploadId": upload_id,
                    "PartNumber": number,
                    "ContentLength": length,
                },
                ExpiresIn=URL_TTL_SECONDS,
            )
            parts.append(
                {"part_number": number, "method": "PUT", "url": part_url, "size_bytes": length}
            )
        common = {"Bucket": bucket, "Key": plan.key, "UploadId": upload_id}
        body["multipart"] = {
            "upload_id": upload_id,
            "part_size_bytes": plan.part_size_bytes,
            "parts": parts,
            "complete": {
                "method": "POST",
                "url": await self._client.generate_presigned_url(
                    "complete_multipart_upload", Params=common, ExpiresIn=URL_TTL_SECONDS
                ),
                "body": "CompleteMultipartUpload XML: each PartNumber with the ETag of its PUT",
            },
            "abort": {
                "method": "DELETE",
                "url": await self._client.generate_presigned_url(
                    "abort_multipart_upload", Params=common, ExpiresIn=URL_TTL_SECONDS
                ),
            },
        }
        return body
