"""Rate limits as token buckets, kept as one number per bucket (GCRA).

A bucket holds up to ``burst`` requests and refills at ``per_minute``. Instead of a token count
and a refill time, the generic cell rate algorithm keeps one timestamp per bucket, its
*theoretical arrival time* (tat): when the bucket would be full again. A request at ``now`` is
admitted while ``tat - now`` stays within the burst's worth of intervals, and moves ``tat`` one
interval on. One number is what makes the stored form a single conditional write
(copilot.adapters.aws.rate_limits), and the wait of a refused request is exact: the
Retry-After a client is sent.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Rate:
    burst: int  # requests admitted at once, from a full bucket
    per_minute: float  # sustained requests a minute (the refill)

    def __post_init__(self) -> None:
        if self.burst < 1 or self.per_minute <= 0:
            raise ValueError("a rate needs burst >= 1 and per_minute > 0")

    @property
    def interval(self) -> float:
        """Seconds one request costs (the refill of one token)."""
        return 60.0 / self.per_minute

    @property
    def tolerance(self) -> float:
        """How far ahead of ``now`` the bucket's tat may be and still admit a request."""
        return self.interval * (self.burst - 1)


def admit(tat: float | None, now: float, rate: Rate) -> tuple[float | None, float]:
    """The bucket's new tat and 0 when a request at ``now`` is admitted; None and the seconds
    until one will be when it is refused. ``tat`` None: a bucket never used (full)."""
    start = now if tat is None or tat < now else tat
    if start - now > rate.tolerance:
        return None, start - rate.tolerance - now
    return start + rate.interval, 0.0
