"""Core package of the customer-engagement copilot (import name ``copilot``)."""

__version__ = "0.1.0"
