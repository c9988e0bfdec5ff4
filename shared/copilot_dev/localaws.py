"""moto's server for the local stack and tests, with DynamoDB's isolation.

moto serves requests on many threads and does not isolate a DynamoDB transaction's condition
checks from a concurrent transaction's writes, which real DynamoDB does (transactions are
serializable). Running DynamoDB requests one at a time restores that guarantee; the other
services (SQS long polls above all) stay concurrent.

Usage: python -m copilot_dev.localaws --host 127.0.0.1 --port 5050
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterable
from typing import Any


class SerializeDynamoDB:
    def __init__(self, app: Callable[..., Iterable[bytes]]) -> None:
        self._app = app
        self._lock = threading.Lock()

    def __call__(
        self, environ: dict[str, Any], start_response: Callable[..., Any]
    ) -> Iterable[bytes]:
        target = environ.get("HTTP_X_AMZ_TARGET", "")
        if not target.startswith("DynamoDB_"):
            return self._app(environ, start_response)
        with self._lock:
            # Consume the whole response inside the lock: the write happens while it is built.
            return list(self._app(environ, start_response))


def cheap_transactions() -> None:
    """moto deep-copies a whole table for every item of a transaction, to roll back on failure:
    the conversation table grows, and each turn gets slower (measured: p50 77 -> 142 ms over
    three runs). DynamoDB requests run one at a time here, so when every condition of a
    transaction holds beforehand, nothing can fail between check and write and the copies are
    skipped; otherwise moto's own path (with copies) runs and reports the cancellation."""
    import copy as real_copy

    from moto.dynamodb import models

    original = models.DynamoDBBackend.transact_write_items

    class _NoCopy:
        @staticmethod
        def deepcopy(value: Any, memo: Any = None) -> Any:
            return value

    def conditions_hold(backend: Any, items: list[dict[str, Any]]) -> bool:
        seen = set()
        for item in items:
            if len(item) != 1:
                return False
            op_type, op = next(iter(item.items()))
            if op_type not in {"ConditionCheck", "Put", "Delete", "Update"}:
                return False
            table = backend.tables.get(op.get("TableName"))
            if table is None:
                return False
            if op_type == "Put":
                attrs = op["Item"]
                key = {table.hash_key_attr: attrs[table.hash_key_attr]}
                if table.range_key_attr is not None:
                    key[table.range_key_attr] = attrs[table.range_key_attr]
            else:
                key = op["Key"]
            marker = (op["TableName"], str(sorted(key.items())))
            if marker in seen:
                return False
            seen.add(marker)
            condition = op.get("ConditionExpression")
            if condition is not None:
                check = models.get_filter_expression(
                    condition,
                    op.get("ExpressionAttributeNames"),
                    op.get("ExpressionAttributeValues"),
                )
                if not check.expr(backend.get_item(op["TableName"], key)):
                    return False
        return True

    def transact_write_items(self: Any, transact_items: list[dict[str, Any]]) -> None:
        if len(transact_items) <= 100 and conditions_hold(self, transact_items):
            models.copy = _NoCopy  # type: ignore[assignment]
            try:
                return original(self, transact_items)
            finally:
                models.copy = real_copy
        return original(self, transact_items)

    models.DynamoDBBackend.transact_write_items = transact_write_items  # type: ignore[method-assign]


def cheap_retention_checks() -> None:
    """moto checks each message it hands out against the queue's retention period by building
    all of the queue's attributes, approximate counts included, each a pass over every message
    in the queue: receiving from a queue of n messages costs O(n) per message. A bulk upload of
    4,000 files kept the server at 95 % of a core on it (measured). Real SQS has no such cost:
    the period is read directly here, with the same result."""
    from moto.core.utils import unix_time
    from moto.sqs import models

    def valid(self: Any, queue_name: str, message: Any) -> bool:
        period = int(self.get_queue(queue_name).message_retention_period)
        return bool(period + message.sent_timestamp / 1000 > unix_time())

    models.SQSBackend.is_message_valid_based_on_retention_period = valid  # type: ignore[method-assign]


def main(argv: list[str] | None = None) -> None:
    from moto.moto_server.werkzeug_app import (
        DomainDispatcherApplication,
        MotoRequestHandler,
        create_backend_app,
    )
    from werkzeug.serving import run_simple

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=5050)
    args = parser.parse_args(argv)
    os.environ.setdefault("MOTO_PORT", str(args.port))
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    cheap_transactions()
    cheap_retention_checks()
    app = DomainDispatcherApplication(create_backend_app)
    run_simple(
        args.host,
        args.port,
        SerializeDynamoDB(app),
        threaded=True,
        request_handler=MotoRequestHandler,
    )


if __name__ == "__main__":
    main()
