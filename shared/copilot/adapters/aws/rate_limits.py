"""Token buckets in the conversations table: one item per bucket, one conditional write a check.

A bucket is the item (pk "rate#<key>", sk 0) holding its theoretical arrival time ``tat`` in
milliseconds (copilot.limits); the table's TTL (``expires_at``) deletes it once it is full
again. Each check is one UpdateItem whose condition names the case it expects:

- idle (no item, or tat in the past): set tat = now + interval;
- in a burst (now <= tat <= now + tolerance): add one interval to tat, atomically, so any
  number of concurrent requests each take their own token without a read or a retry.

A failed condition returns the stored tat (ReturnValuesOnConditionCheckFailure), which either
says the request is refused (tat beyond the tolerance: the wait is exact) or names the other
case, tried next. So an admitted request costs one write, or two when it starts a burst
whose bucket was last seen idle; a refused one costs one.
"""

from __future__ import annotations

import math
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from copilot.errors import UnavailableError
from copilot.limits import Rate
from copilot.ports import RateLimitStore

_SK = 0
_ATTEMPTS = 4  # each failure moved the bucket on: a few attempts settle any race
_KEEP_SECONDS = 60  # an item outlives its bucket refilling by this much before TTL removes it


class DynamoRateLimitStore(RateLimitStore):
    def __init__(self, client: Any, table: str) -> None:
        self._db = client
        self._table = table

    def take(self, key: str, rate: Rate, now: float) -> float:
        now_ms = int(now * 1000)
        interval_ms = max(1, round(rate.interval * 1000))
        limit_ms = now_ms + round(rate.tolerance * 1000)
        expires = {"N": str(math.ceil(limit_ms / 1000) + math.ceil(rate.interval) + _KEEP_SECONDS)}
        seen: int | None = None  # the stored tat; unknown at first, and most buckets are idle
        for _ in range(_ATTEMPTS):
            if seen is not None and seen > limit_ms:
                return (seen - limit_ms) / 1000
            if seen is None or seen < now_ms:
                update = "SET tat = :next, expires_at = :exp"
                condition = "attribute_not_exists(tat) OR tat < :now"
                values = {":next": {"N": str(now_ms + interval_ms)}, ":now": {"N": str(now_ms)}}
            else:
                update = "SET tat = tat + :step, expires_at = :exp"
                condition = "tat BETWEEN :now AND :limit"
                values = {
                    ":step": {"N": str(interval_ms)},
                    ":now": {"N": str(now_ms)},
                    ":limit": {"N": str(limit_ms)},
                }
            try:
                self._db.update_item(
                    TableName=self._table,
                    Key={"pk": {"S": f"rate#{key}"}, "sk": {"N": str(_SK)}},
                    UpdateExpression=update,
                    ConditionExpression=condition,
                    ExpressionAttributeValues={**values, ":exp": expires},
                    ReturnValuesOnConditionCheckFailure="ALL_OLD",
                )
                return 0.0
            except ClientError as e:
                if e.response.get("Error", {}).get("Code") != "ConditionalCheckFailedException":
                    raise UnavailableError("the rate-limit store is unavailable") from e
                stored = e.response.get("Item", {}).get("tat")
                seen = int(stored["N"]) if stored else None
            except BotoCoreError as e:
                raise UnavailableError("the rate-limit store is unavailable") from e
        # Lost every race to concurrent requests on this bucket: it is busy, refuse briefly.
        return rate.interval
