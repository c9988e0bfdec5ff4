"""Hub secrets: named by a copilot's hub settings, resolved at run time, never stored with it."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from copilot.errors import UnavailableError
from copilot.ports import SecretStore

ENV_PREFIX = "COPILOT_HUB_SECRET_"


class EnvSsmSecretStore(SecretStore):
    """``COPILOT_HUB_SECRET_<REF>`` from the environment, else the SSM SecureString
    ``<ssm_prefix>/<REF>`` (cached for ``ttl`` seconds, so a rotated secret is picked up)."""

    def __init__(
        self,
        env: Mapping[str, str],
        ssm: Callable[[], Any] | None = None,
        ssm_prefix: str | None = None,
        ttl: float = 300,
    ) -> None:
        self._env = env
        self._ssm = ssm
        self._prefix = ssm_prefix.rstrip("/") if ssm_prefix else None
        self._ttl = ttl
        self._cache: dict[str, tuple[float, str | None]] = {}
        self._lock = threading.Lock()

    def get(self, ref: str) -> str | None:
        value = self._env.get(ENV_PREFIX + ref.upper())
        if value:
            return value
        if self._prefix is None or self._ssm is None:
            return None
        with self._lock:
            cached = self._cache.get(ref)
            if cached is not None and cached[0] > time.monotonic():
                return cached[1]
        found = self._from_ssm(f"{self._prefix}/{ref}")
        with self._lock:
            self._cache[ref] = (time.monotonic() + self._ttl, found)
        return found

    def _from_ssm(self, name: str) -> str | None:
        try:
            response = self._ssm().get_parameter(Name=name, WithDecryption=True)  # type: ignore[misc]
        except ClientError as e:
            if e.response.get("Error", {}).get("Code") == "ParameterNotFound":
                return None
            raise UnavailableError("the hub secret could not be read") from e
        except BotoCoreError as e:
            raise UnavailableError("the hub secret could not be read") from e
        return str(response["Parameter"]["Value"])
