"""Lexical index segments in S3, with their manifest and merge bookkeeping in DynamoDB."""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from copilot.conflicts import WriteConflict
from copilot.errors import UnavailableError
from copilot.ports import LexicalManifest, LexicalStore

_KEY = "#state/#lexical"  # in the documents table, hidden from document listings
SNAPSHOT_PREFIX = "_lexical"  # bucket keys outside every copilot's prefix


def _manifest(item: dict[str, Any]) -> LexicalManifest:
    return LexicalManifest(
        version=int(item.get("mver", {}).get("N", "0")),
        segments=tuple(s["S"] for s in item.get("seg_list", {}).get("L", [])),
    )


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

    def next_seq(self, copilot_id: str) -> int:
        new = self._update(copilot_id, "ADD seq :one", {":one": {"N": "1"}}, returns="UPDATED_NEW")
        return int(new["seq"]["N"])

    def add_segment(self, copilot_id: str, name: str, data: bytes) -> LexicalManifest:
        self._put(copilot_id, name, data)
        new = self._update(
            copilot_id,
            "SET seg_list = list_append(if_not_exists(seg_list, :empty), :new) ADD mver :one",
            {":empty": {"L": []}, ":new": {"L": [{"S": name}]}, ":one": {"N": "1"}},
            returns="ALL_NEW",
        )
        return _manifest(new)

    def replace_segments(self, copilot_id: str, old: Sequence[str], name: str, data: bytes) -> bool:
        self._put(copilot_id, name, data)
        for _ in range(8):
            current = self.manifest(copilot_id)
            listed = current.segments if current else ()
            if not set(old) <= set(listed):
                self._delete(self._object_key(copilot_id, name))
                return False
            segments = [s for s in listed if s not in set(old)] + [name]
            condition = "attribute_not_exists(mver)" if current is None else "mver = :v"
            values: dict[str, Any] = {
                ":s": {"L": [{"S": s} for s in segments]},
                ":v1": {"N": str((current.version if current else 0) + 1)},
            }
            if current is not None:
                values[":v"] = {"N": str(current.version)}
            try:
                self._update(
                    copilot_id,
                    "SET seg_list = :s, mver = :v1",
                    values,
                    condition=condition,
                    returns="NONE",
                )
            except WriteConflict:
                continue  # a segment was added meanwhile: read the manifest again
            for gone in old:
                self._delete(self._object_key(copilot_id, gone))
            return True
        self._delete(self._object_key(copilot_id, name))
        return False

    def manifest(self, copilot_id: str) -> LexicalManifest | None:
        try:
            item = self._db.get_item(
                TableName=self._table,
                Key=self._key(copilot_id),
                ConsistentRead=True,
                ProjectionExpression="seg_list, mver",
            ).get("Item")
        except (ClientError, BotoCoreError) as e:
            raise UnavailableError("the document store is unavailable") from e
        return _manifest(item) if item and "mver" in item else None

    def fetch(self, copilot_id: str, name: str) -> bytes | None:
        try:
            response = self._s3.get_object(
                Bucket=self._bucket, Key=self._object_key(copilot_id, name)
            )
            return bytes(response["Body"].read())
        except ClientError as e:
            if e.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                return None  # merged away meanwhile: the caller reads the manifest again
            raise UnavailableError("the knowledge bucket is unavailable") from e
        except BotoCoreError as e:
            raise UnavailableError("the knowledge bucket is unavailable") from e

    def _object_key(self, copilot_id: str, name: str) -> str:
        return f"{SNAPSHOT_PREFIX}/{copilot_id}/{name}.seg"

    def _put(self, copilot_id: str, name: str, data: bytes) -> None:
        try:
            self._s3.put_object(
                Bucket=self._bucket, Key=self._object_key(copilot_id, name), Body=data
            )
        except (ClientError, BotoCoreError) as e:
            raise UnavailableError("the knowledge bucket is unavailable") from e

    def _delete(self, key: str) -> None:
        # An orphan segment costs storage, never correctness.
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
