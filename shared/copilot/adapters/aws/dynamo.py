"""DynamoDB adapters: copilots, conversations (+ their messages), document status."""

from __future__ import annotations

import builtins
import json
import time
from collections.abc import Sequence
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from copilot.admin.models import Copilot
from copilot.analytics.events import AnalyticsEvent
from copilot.conflicts import WriteConflict
from copilot.conversation.models import Conversation, IdempotentOutcome, Message
from copilot.errors import DuplicateError, UnavailableError
from copilot.handoff.models import HubLink
from copilot.ingest.models import DocumentStatus
from copilot.ports import ConversationStore, CopilotRegistry, DocumentStore, StateStore

_META_SK = 0


def _translate(error: Exception) -> WriteConflict | UnavailableError:
    if isinstance(error, ClientError):
        code = error.response.get("Error", {}).get("Code", "")
        if code in ("ConditionalCheckFailedException", "TransactionCanceledException"):
            return WriteConflict("the record changed while it was being written")
    return UnavailableError("the conversation store is unavailable")


class DynamoCopilotRegistry(CopilotRegistry):
    def __init__(self, client: Any, table: str) -> None:
        self._db = client
        self._table = table

    def create(self, copilot: Copilot) -> None:
        try:
            self._db.put_item(
                TableName=self._table,
                Item=self._item(copilot),
                ConditionExpression="attribute_not_exists(copilot_id)",
            )
        except (ClientError, BotoCoreError) as e:
            raise _translate(e) from e

    def get(self, copilot_id: str) -> Copilot | None:
        try:
            item = self._db.get_item(
                TableName=self._table, Key={"copilot_id": {"S": copilot_id}}, ConsistentRead=True
            ).get("Item")
        except (ClientError, BotoCoreError) as e:
            raise _translate(e) from e
        return Copilot.model_validate_json(item["body"]["S"]) if item else None

    def replace(self, copilot: Copilot, *, expected_version: int) -> None:
        try:
            self._db.put_item(
                TableName=self._table,
                Item=self._item(copilot),
                ConditionExpression="version = :v",
                ExpressionAttributeValues={":v": {"N": str(expected_version)}},
            )
        except (ClientError, BotoCoreError) as e:
            raise _translate(e) from e

    def list(self) -> list[Copilot]:
        out: list[Copilot] = []
        try:
            for page in self._db.get_paginator("scan").paginate(TableName=self._table):
                out.extend(Copilot.model_validate_json(i["body"]["S"]) for i in page["Items"])
        except (ClientError, BotoCoreError) as e:
            raise _translate(e) from e
        return sorted(out, key=lambda c: c.created_at)

    @staticmethod
    def _item(copilot: Copilot) -> dict[str, Any]:
        return {
            "copilot_id": {"S": copilot.copilot_id},
            "version": {"N": str(copilot.version)},
            "body": {"S": copilot.model_dump_json()},
        }


class DynamoConversationStore(ConversationStore):
    """One item per conversation (sk 0) and one per message (sk = sequence number).

    Every change to a conversation is a transaction guarded by the conversation's version, so
    two concurrent writers can never assign the same sequence number or lose an update.
    """

    def __init__(
        self,
        client: Any,
        table: str,
        ttl_days: int = 30,
        events_table: str | None = None,
        events_buffer_hours: int = 48,
    ) -> None:
        self._db = client
        self._table = table
        self._ttl_seconds = ttl_days * 86400
        # Analytics events: one item each in their own table, written in the change's
        # transaction; the table's stream carries them to the archive, and TTL clears them
        # after ``events_buffer_hours`` (longer than the stream keeps a record: 24 h).
        self._events_table = events_table
        self._events_ttl = events_buffer_hours * 3600

    def create(
        self,
        conversation: Conversation,
        messages: Sequence[Message],
        *,
        outcome: IdempotentOutcome | None = None,
        events: Sequence[AnalyticsEvent] = (),
    ) -> Conversation:
        stored = conversation.model_copy(
            update={"version": 1, "last_seq": conversation.last_seq + len(messages)}
        )
        self._check_seqs(conversation, messages)
        items: list[dict[str, Any]] = [
            {
                "Put": {
                    "TableName": self._table,
                    "Item": self._meta_item(stored),
                    "ConditionExpression": "attribute_not_exists(pk)",
                }
            }
        ]
        items += [self._put_message(stored.conversation_id, m) for m in messages]
        items += self._put_events(events)
        first_claim = len(items)
        if outcome is not None:
            items.append(self._put_outcome(outcome))
        self._write(items, first_claim)
        return stored

    def get(self, conversation_id: str) -> Conversation | None:
        try:
            item = self._db.get_item(
                TableName=self._table,
                Key={"pk": {"S": self._pk(conversation_id)}, "sk": {"N": str(_META_SK)}},
                ConsistentRead=True,
            ).get("Item")
        except (ClientError, BotoCoreError) as e:
            raise _translate(e) from e
        if not item or _expired(item):
            return None  # TTL deletes an expired conversation only eventually (within days)
        return Conversation.model_validate_json(item["body"]["S"])

    def append(
        self,
        conversation: Conversation,
        messages: Sequence[Message],
        *,
        claims: Sequence[str] = (),
        outcome: IdempotentOutcome | None = None,
        links: Sequence[HubLink] = (),
        events: Sequence[AnalyticsEvent] = (),
    ) -> Conversation:
        self._check_seqs(conversation, messages)
        stored = conversation.model_copy(
            update={
                "version": conversation.version + 1,
                "last_seq": conversation.last_seq + len(messages),
            }
        )
        meta = self._meta_item(stored)
        items: list[dict[str, Any]] = [
            {
                "Put": {
                    "TableName": self._table,
                    "Item": meta,
                    "ConditionExpression": "version = :v",
                    "ExpressionAttributeValues": {":v": {"N": str(conversation.version)}},
                }
            }
        ]
        items += [self._put_message(stored.conversation_id, m) for m in messages]
        items += self._put_events(events)
        first_claim = len(items)
        items += [self._put_claim(key) for key in claims]
        if outcome is not None:
            items.append(self._put_outcome(outcome))
        items += [self._put_link(link) for link in links]
        self._write(items, first_claim)
        return stored

    def linked(self, key: str) -> HubLink | None:
        try:
            item = self._db.get_item(
                TableName=self._table,
                Key={"pk": {"S": f"claim#{key}"}, "sk": {"N": str(_META_SK)}},
                ConsistentRead=True,
            ).get("Item")
        except (ClientError, BotoCoreError) as e:
            raise _translate(e) from e
        if not item or "conversation_id" not in item or _expired(item):
            return None
        return HubLink(
            key=key,
            conversation_id=item["conversation_id"]["S"],
            handoff_id=item["handoff_id"]["S"],
        )

    def outcome(self, claim: str) -> IdempotentOutcome | None:
        try:
            item = self._db.get_item(
                TableName=self._table,
                Key={"pk": {"S": self._outcome_pk(claim)}, "sk": {"N": str(_META_SK)}},
                ConsistentRead=True,
            ).get("Item")
        except (ClientError, BotoCoreError) as e:
            raise _translate(e) from e
        if not item or "body" not in item:
            return None
        stored = IdempotentOutcome.model_validate_json(item["body"]["S"])
        # TTL deletes expired items only eventually (within days): expiry is checked here.
        return stored if stored.expires_at.timestamp() > time.time() else None

    def _write(self, items: list[dict[str, Any]], first_claim: int) -> None:
        """One transaction; DuplicateError if a claim from ``items[first_claim:]`` is taken."""
        try:
            self._db.transact_write_items(TransactItems=items)
        except ClientError as e:
            reasons = e.response.get("CancellationReasons") or []
            if any(r.get("Code") == "ConditionalCheckFailed" for r in reasons[first_claim:]):
                raise DuplicateError("already applied") from e
            raise _translate(e) from e
        except BotoCoreError as e:
            raise _translate(e) from e

    def messages_after(
        self, conversation_id: str, after_seq: int, limit: int = 100
    ) -> list[Message]:
        return self._query(conversation_id, after_seq, limit, forward=True)

    def recent_messages(self, conversation_id: str, limit: int) -> list[Message]:
        return list(reversed(self._query(conversation_id, 0, limit, forward=False)))

    def _query(
        self, conversation_id: str, after_seq: int, limit: int, *, forward: bool
    ) -> list[Message]:
        try:
            response = self._db.query(
                TableName=self._table,
                KeyConditionExpression="pk = :pk AND sk > :after",
                ExpressionAttributeValues={
                    ":pk": {"S": self._pk(conversation_id)},
                    ":after": {"N": str(max(after_seq, _META_SK))},
                },
                ScanIndexForward=forward,
                Limit=limit,
                ConsistentRead=True,
            )
        except (ClientError, BotoCoreError) as e:
            raise _translate(e) from e
        return [Message.model_validate_json(i["body"]["S"]) for i in response["Items"]]

    @staticmethod
    def _check_seqs(conversation: Conversation, messages: Sequence[Message]) -> None:
        expected = list(range(conversation.last_seq + 1, conversation.last_seq + 1 + len(messages)))
        if [m.seq for m in messages] != expected:
            raise ValueError(f"message sequence numbers must be {expected}")

    @staticmethod
    def _pk(conversation_id: str) -> str:
        return f"conv#{conversation_id}"

    def _expires_at(self) -> dict[str, str]:
        return {"N": str(int(time.time()) + self._ttl_seconds)}

    def _meta_item(self, conversation: Conversation) -> dict[str, Any]:
        return {
            "pk": {"S": self._pk(conversation.conversation_id)},
            "sk": {"N": str(_META_SK)},
            "version": {"N": str(conversation.version)},
            "body": {"S": conversation.model_dump_json()},
            "expires_at": self._expires_at(),
        }

    def _put_claim(self, key: str) -> dict[str, Any]:
        # Claims share the table (and its TTL) with conversations: "claim#" never starts a pk
        # of a conversation, so they cannot collide.
        return {
            "Put": {
                "TableName": self._table,
                "Item": {
                    "pk": {"S": f"claim#{key}"},
                    "sk": {"N": str(_META_SK)},
                    "expires_at": self._expires_at(),
                },
                "ConditionExpression": "attribute_not_exists(pk)",
            }
        }

    def _put_link(self, link: HubLink) -> dict[str, Any]:
        # A claim that names its conversation: the same link again is a no-op (a retried
        # write), one naming another conversation or hand-off is refused (DuplicateError).
        return {
            "Put": {
                "TableName": self._table,
                "Item": {
                    "pk": {"S": f"claim#{link.key}"},
                    "sk": {"N": str(_META_SK)},
                    "conversation_id": {"S": link.conversation_id},
                    "handoff_id": {"S": link.handoff_id},
                    "expires_at": self._expires_at(),
                },
                "ConditionExpression": "attribute_not_exists(pk) OR "
                "(conversation_id = :c AND handoff_id = :h)",
                "ExpressionAttributeValues": {
                    ":c": {"S": link.conversation_id},
                    ":h": {"S": link.handoff_id},
                },
            }
        }

    @staticmethod
    def _outcome_pk(claim: str) -> str:
        return f"claim#outcome:{claim}"

    def _put_outcome(self, outcome: IdempotentOutcome) -> dict[str, Any]:
        # A claim with a body: taken until its own expiry (shorter than the conversation's),
        # after which the same key may claim it again even before TTL has deleted it.
        return {
            "Put": {
                "TableName": self._table,
                "Item": {
                    "pk": {"S": self._outcome_pk(outcome.claim)},
                    "sk": {"N": str(_META_SK)},
                    "body": {"S": outcome.model_dump_json()},
                    "expires_at": {"N": str(int(outcome.expires_at.timestamp()))},
                },
                "ConditionExpression": "attribute_not_exists(pk) OR expires_at < :now",
                "ExpressionAttributeValues": {":now": {"N": str(int(time.time()))}},
            }
        }

    def _put_events(self, events: Sequence[AnalyticsEvent]) -> list[dict[str, Any]]:
        if self._events_table is None or not events:
            return []
        expires_at = {"N": str(int(time.time()) + self._events_ttl)}
        return [
            {
                "Put": {
                    "TableName": self._events_table,
                    "Item": {
                        "event_id": {"S": e.event_id},
                        "copilot_id": {"S": e.copilot_id},
                        "body": {"S": e.model_dump_json(exclude_none=True)},
                        "expires_at": expires_at,
                    },
                }
            }
            for e in events
        ]

    def _put_message(self, conversation_id: str, message: Message) -> dict[str, Any]:
        return {
            "Put": {
                "TableName": self._table,
                "Item": {
                    "pk": {"S": self._pk(conversation_id)},
                    "sk": {"N": str(message.seq)},
                    "body": {"S": message.model_dump_json()},
                    "expires_at": self._expires_at(),
                },
                "ConditionExpression": "attribute_not_exists(sk)",
            }
        }


_STATE_PREFIX = "#state/"  # state items share the documents table; "#" never starts a file key


class DynamoDocumentStore(DocumentStore, StateStore):
    def __init__(self, client: Any, table: str) -> None:
        self._db = client
        self._table = table

    def save(self, status: DocumentStatus) -> DocumentStatus:
        stored, put = self._put(status)
        try:
            self._db.put_item(**put)
        except (ClientError, BotoCoreError) as e:
            raise _translate(e) from e
        return stored

    def _put(self, status: DocumentStatus) -> tuple[DocumentStatus, dict[str, Any]]:
        """The record as stored (next revision) and its conditional Put."""
        stored = status.model_copy(update={"rev": status.rev + 1})
        condition: dict[str, Any] = (
            {"ConditionExpression": "attribute_not_exists(doc_key)"}
            if status.rev == 0
            else {
                "ConditionExpression": "rev = :rev",
                "ExpressionAttributeValues": {":rev": {"N": str(status.rev)}},
            }
        )
        item = {
            "copilot_id": {"S": status.copilot_id},
            "doc_key": {"S": status.doc_key},
            "rev": {"N": str(stored.rev)},
            "body": {"S": stored.model_dump_json()},
        }
        return stored, {"TableName": self._table, "Item": item, **condition}

    def save_many(self, statuses: Sequence[DocumentStatus]) -> Sequence[DocumentStatus | None]:
        """Up to 100 conditional writes per transaction (one round trip). A transaction is all
        or nothing: when some conditions fail, the others are written again without them."""
        out: builtins.list[DocumentStatus | None] = [None] * len(statuses)
        puts = [self._put(s) for s in statuses]
        pending = list(range(len(statuses)))
        while pending:
            part = pending[:100]
            try:
                self._db.transact_write_items(TransactItems=[{"Put": puts[i][1]} for i in part])
            except ClientError as e:
                reasons = e.response.get("CancellationReasons") or []
                lost = {
                    part[n]
                    for n, r in enumerate(reasons)
                    if r.get("Code") == "ConditionalCheckFailed"
                }
                if not lost:
                    raise _translate(e) from e
                pending = [i for i in pending if i not in lost]
                continue
            except BotoCoreError as e:
                raise _translate(e) from e
            for i in part:
                out[i] = puts[i][0]
            pending = pending[100:]
        return out

    def get_many(self, copilot_id: str, doc_keys: Sequence[str]) -> dict[str, DocumentStatus]:
        return {s.doc_key: s for s in self._batch_get(copilot_id, doc_keys)}

    def get(self, copilot_id: str, doc_key: str) -> DocumentStatus | None:
        try:
            item = self._db.get_item(
                TableName=self._table,
                Key={"copilot_id": {"S": copilot_id}, "doc_key": {"S": doc_key}},
                ConsistentRead=True,
            ).get("Item")
        except (ClientError, BotoCoreError) as e:
            raise _translate(e) from e
        return DocumentStatus.model_validate_json(item["body"]["S"]) if item else None

    def list(self, copilot_id: str) -> list[DocumentStatus]:
        out: list[DocumentStatus] = []
        try:
            pages = self._db.get_paginator("query").paginate(
                TableName=self._table,
                KeyConditionExpression="copilot_id = :c",
                ExpressionAttributeValues={":c": {"S": copilot_id}},
                ConsistentRead=True,
            )
            for page in pages:
                out.extend(
                    DocumentStatus.model_validate_json(i["body"]["S"])
                    for i in page["Items"]
                    if not i["doc_key"]["S"].startswith(_STATE_PREFIX)
                )
        except (ClientError, BotoCoreError) as e:
            raise _translate(e) from e
        return out

    def delete(self, copilot_id: str, doc_key: str, *, rev: int) -> None:
        try:
            self._db.delete_item(
                TableName=self._table,
                Key={"copilot_id": {"S": copilot_id}, "doc_key": {"S": doc_key}},
                ConditionExpression="attribute_not_exists(doc_key) OR rev = :rev",
                ExpressionAttributeValues={":rev": {"N": str(rev)}},
            )
        except (ClientError, BotoCoreError) as e:
            raise _translate(e) from e

    def active_versions(self, copilot_id: str, doc_keys: Sequence[str]) -> dict[str, str]:
        return {
            s.doc_key: s.version
            for s in self._batch_get(copilot_id, doc_keys)
            if s.version is not None
        }

    def _batch_get(self, copilot_id: str, doc_keys: Sequence[str]) -> builtins.list[DocumentStatus]:
        keys = sorted(set(doc_keys))
        out: builtins.list[DocumentStatus] = []
        for start in range(0, len(keys), 100):  # BatchGetItem takes 100 keys at most
            request: dict[str, Any] = {
                self._table: {
                    "Keys": [
                        {"copilot_id": {"S": copilot_id}, "doc_key": {"S": k}}
                        for k in keys[start : start + 100]
                    ],
                    "ConsistentRead": True,
                    "ProjectionExpression": "body",
                }
            }
            for _ in range(8):
                try:
                    response = self._db.batch_get_item(RequestItems=request)
                except (ClientError, BotoCoreError) as e:
                    raise _translate(e) from e
                out.extend(
                    DocumentStatus.model_validate_json(item["body"]["S"])
                    for item in response["Responses"].get(self._table, [])
                )
                request = response.get("UnprocessedKeys") or {}
                if not request:
                    break
            else:
                raise UnavailableError("the document store is throttling reads")
        return out

    def get_state(self, copilot_id: str, name: str) -> dict[str, Any] | None:
        try:
            item = self._db.get_item(
                TableName=self._table,
                Key={"copilot_id": {"S": copilot_id}, "doc_key": {"S": _STATE_PREFIX + name}},
                ConsistentRead=True,
            ).get("Item")
        except (ClientError, BotoCoreError) as e:
            raise _translate(e) from e
        return dict(json.loads(item["body"]["S"])) if item else None

    def put_state(self, copilot_id: str, name: str, state: dict[str, Any]) -> None:
        try:
            self._db.put_item(
                TableName=self._table,
                Item={
                    "copilot_id": {"S": copilot_id},
                    "doc_key": {"S": _STATE_PREFIX + name},
                    "body": {"S": json.dumps(state)},
                },
            )
        except (ClientError, BotoCoreError) as e:
            raise _translate(e) from e


def create_tables(
    client: Any,
    *,
    copilots: str,
    conversations: str,
    documents: str,
    analytics_events: str | None = None,
) -> None:
    """Create the tables (local stack and tests; on AWS serverless.yml owns them). The
    analytics events table has a stream (new images): the archive's feed."""
    specs = [
        (copilots, [("copilot_id", "S", "HASH")]),
        (conversations, [("pk", "S", "HASH"), ("sk", "N", "RANGE")]),
        (documents, [("copilot_id", "S", "HASH"), ("doc_key", "S", "RANGE")]),
    ]
    if analytics_events:
        specs.append((analytics_events, [("event_id", "S", "HASH")]))
    existing = set(client.list_tables()["TableNames"])
    for name, keys in specs:
        if name in existing:
            continue
        stream = (
            {"StreamSpecification": {"StreamEnabled": True, "StreamViewType": "NEW_IMAGE"}}
            if name == analytics_events
            else {}
        )
        client.create_table(
            TableName=name,
            BillingMode="PAY_PER_REQUEST",
            AttributeDefinitions=[{"AttributeName": k, "AttributeType": t} for k, t, _ in keys],
            KeySchema=[{"AttributeName": k, "KeyType": kt} for k, _, kt in keys],
            **stream,
        )


def _expired(item: dict[str, Any]) -> bool:
    expires_at = item.get("expires_at", {}).get("N")
    return expires_at is not None and int(expires_at) <= time.time()
