"""Lexical snapshots in S3, with their pointer and rebuild bookkeeping in DynamoDB."""

from __future__ import annotations

import contextlib
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from copilot.conflicts import WriteConflict
from copilot.errors import UnavailableError
from copilot.ports import LexicalStore

_KEY = "#state/#lexical"  # in the documents table, hidden from document listings
SNAPSHOT_PREFIX = "_lexical"  # bucket keys outside every copilot's prefix


class DynamoS3LexicalStore(LexicalStore):
    def __init__(self, dynamodb: Any, table: str, s3: Any, bucket: str) -> None:
        self._db = dynamodb
        self._table = table
        self._s3 = s3
        self._bucket = bucket

    def _key(self, copilot_id: str) -> dict[str, Any]:
        return {"copilot_id": {"S": copilot_id}, "doc_key": {"S": _KEY}}

    def mark_dirty(self, copilot_id: str) -> bool:
        self._update(copilot_id, "ADD dirty_gen :one", {":one": {"N": "1"}}, returns="NONE")
        # Schedule only if no rebuild is scheduled: a conditional write, not UPDATED_OLD (moto
        # leaves unchanged attributes out of it, and then every change scheduled a rebuild).
        try:
            self._update(
                copilot_id,
                "SET scheduled = :yes",
                {":yes": {"BOOL": True}, ":no": {"BOOL": False}},
                condition="attribute_not_exists(scheduled) OR scheduled = :no",
                returns="NONE",
            )
        except WriteConflict:
            return False
        return True

    def begin_rebuild(self, copilot_id: str) -> int:
        new = self._update(
            copilot_id, "SET scheduled = :no", {":no": {"BOOL": False}}, returns="ALL_NEW"
        )
        return int(new.get("dirty_gen", {}).get("N", "0"))

    def publish(self, copilot_id: str, generation: int, snapshot: bytes) -> bool:
        key = f"{SNAPSHOT_PREFIX}/{copilot_id}/{generation}.json.gz"
        try:
            self._s3.put_object(Bucket=self._bucket, Key=key, Body=snapshot)
        except (ClientError, BotoCoreError) as e:
            raise UnavailableError("the knowledge bucket is unavailable") from e
        try:
            old = self._update(
                copilot_id,
                "SET built_gen = :g, snapshot_key = :k",
                {":g": {"N": str(generation)}, ":k": {"S": key}},
                condition="attribute_not_exists(built_gen) OR built_gen < :g",
                returns="UPDATED_OLD",
            )
        except WriteConflict:
            self._delete(key)  # a newer snapshot is already published
            return False
        previous = old.get("snapshot_key", {}).get("S")
        if previous and previous != key:
            self._delete(previous)
        return True

    def pointer(self, copilot_id: str) -> str | None:
        try:
            item = self._db.get_item(
                TableName=self._table,
                Key=self._key(copilot_id),
                ConsistentRead=True,
                ProjectionExpression="snapshot_key",
            ).get("Item")
        except (ClientError, BotoCoreError) as e:
            raise UnavailableError("the document store is unavailable") from e
        return item["snapshot_key"]["S"] if item and "snapshot_key" in item else None

    def fetch(self, copilot_id: str, pointer: str) -> bytes | None:
        try:
            return bytes(self._s3.get_object(Bucket=self._bucket, Key=pointer)["Body"].read())
        except ClientError as e:
            if e.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                return None  # replaced meanwhile: the caller reads the pointer again
            raise UnavailableError("the knowledge bucket is unavailable") from e
        except BotoCoreError as e:
            raise UnavailableError("the knowledge bucket is unavailable") from e

    def _delete(self, key: str) -> None:
        # An orphan snapshot costs storage, never correctness.
        with contextlib.suppress(ClientError, BotoCoreError):
            self._s3.delete_object(Bucket=self._bucket, Key=key)

    def _update(
        self,
        copilot_id: str,
        expression: str,
        values: dict[str, Any],
        *,
        returns: str,
        condition: str | None = None,
    ) -> dict[str, Any]:
        extra = {"ConditionExpression": condition} if condition else {}
        try:
            response = self._db.update_item(
                TableName=self._table,
                Key=self._key(copilot_id),
                UpdateExpression=expression,
                ExpressionAttributeValues=values,
                ReturnValues=returns,
                **extra,
            )
        except ClientError as e:
            if e.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException":
                raise WriteConflict("the lexical bookkeeping changed") from e
            raise UnavailableError("the document store is unavailable") from e
        except BotoCoreError as e:
            raise UnavailableError("the document store is unavailable") from e
        return dict(response.get("Attributes", {}))
