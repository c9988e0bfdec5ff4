"""Analytics: conversation outcomes, customer feedback, reports."""

from __future__ import annotations
