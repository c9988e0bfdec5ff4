"""S3 adapter for knowledge files."""

from __future__ import annotations

from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from copilot.errors import PermanentIngestError, UnavailableError
from copilot.ports import BlobStore, ObjectInfo, StoredObject


class S3BlobStore(BlobStore):
    def __init__(self, client: Any, bucket: str, what: str = "the knowledge bucket") -> None:
        self._s3 = client
        self._bucket = bucket
        self._unavailable = f"{what} is unavailable"

    def get(self, key: str, max_bytes: int) -> StoredObject | None:
        response = self._object(self._s3.get_object, key)
        if response is None:
            return None
        size = int(response.get("ContentLength", 0))
        if size > max_bytes:
            response["Body"].close()
            raise PermanentIngestError(
                f"the file is {size / 1e6:.1f} MB, over the {max_bytes / 1e6:.0f} MB limit"
            )
        body = response["Body"].read(max_bytes + 1)
        if len(body) > max_bytes:
            raise PermanentIngestError(f"the file is over the {max_bytes / 1e6:.0f} MB limit")
        version = _version(response)
        return StoredObject(
            key=key,
            body=body,
            version=version,
            size=len(body),
            last_modified=response.get("LastModified"),
            content_type=response.get("ContentType"),
            metadata=dict(response.get("Metadata") or {}),
        )

    def head(self, key: str) -> str | None:
        response = self._object(self._s3.head_object, key)
        return None if response is None else _version(response)

    def _object(self, call: Any, key: str) -> dict[str, Any] | None:
        """GetObject or HeadObject: the response, or None when the object does not exist."""
        try:
            return dict(call(Bucket=self._bucket, Key=key))
        except ClientError as e:
            if e.response.get("Error", {}).get("Code") in ("NoSuchKey", "404", "NotFound"):
                return None
            raise UnavailableError(self._unavailable) from e
        except BotoCoreError as e:
            raise UnavailableError(self._unavailable) from e

    def put(
        self,
        key: str,
        body: bytes,
        content_type: str | None = None,
        metadata: dict[str, str] | None = None,
    ) -> None:
        extra: dict[str, Any] = {"ContentType": content_type} if content_type else {}
        if metadata:
            extra["Metadata"] = metadata
        try:
            self._s3.put_object(Bucket=self._bucket, Key=key, Body=body, **extra)
        except (ClientError, BotoCoreError) as e:
            raise UnavailableError(self._unavailable) from e

    def list(self, prefix: str) -> list[ObjectInfo]:
        out: list[ObjectInfo] = []
        try:
            for page in self._s3.get_paginator("list_objects_v2").paginate(
                Bucket=self._bucket, Prefix=prefix
            ):
                out.extend(
                    ObjectInfo(key=o["Key"], etag=o["ETag"].strip('"'), size=int(o["Size"]))
                    for o in page.get("Contents", [])
                )
        except (ClientError, BotoCoreError) as e:
            raise UnavailableError(self._unavailable) from e
        return out

    def delete(self, key: str) -> None:
        try:
            self._s3.delete_object(Bucket=self._bucket, Key=key)
        except (ClientError, BotoCoreError) as e:
            raise UnavailableError(self._unavailable) from e


def _version(response: dict[str, Any]) -> str | None:
    # The ETag identifies the content; a version id (versioned buckets) the upload.
    return response.get("VersionId") or response.get("ETag", "").strip('"') or None
