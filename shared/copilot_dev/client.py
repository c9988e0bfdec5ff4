"""HTTP client of the chat function's API, for the CLI, the end-to-end tests and benchmarks."""

from __future__ import annotations

import http.client
from typing import Any

import requests

from copilot.admin.models import Copilot
from copilot.analytics.report import AnalyticsReport
from copilot.conversation.models import MessagesPage, StartConversationResponse, TurnResponse
from copilot.ingest.models import DocumentStatus, RetryResult
from copilot.knowledge.calibration import CalibrationRequest, CalibrationResult, LabelledQuestion


class ApiError(Exception):
    def __init__(self, status: int, body: Any) -> None:
        message = body.get("error", {}).get("message") if isinstance(body, dict) else body
        super().__init__(f"HTTP {status}: {message}")
        self.status = status
        self.body = body


class CopilotClient:
    def __init__(self, base_url: str, admin_key: str | None = None, timeout: float = 30) -> None:
        self.base_url = base_url.rstrip("/")
        self.admin_key = admin_key
        self.timeout = timeout
        self.http = requests.Session()
        self.last_response: requests.Response | None = None

    def _call(
        self,
        method: str,
        path: str,
        *,
        token: str | None = None,
        admin: bool = False,
        **kwargs: Any,
    ) -> Any:
        headers = kwargs.pop("headers", {})
        if token:
            headers["Authorization"] = f"Bearer {token}"
        if admin and self.admin_key:
            headers["X-Admin-Key"] = self.admin_key
        timeout = kwargs.pop("timeout", self.timeout)
        url = self.base_url + path
        try:
            response = self.http.request(method, url, headers=headers, timeout=timeout, **kwargs)
        except requests.ConnectionError as e:
            # A kept-alive connection the server closed as it was reused (gunicorn closes idle
            # ones after 2 s): nothing reached the server, so a request that is safe to repeat
            # goes again on a new connection, as a browser does. A POST without an
            # Idempotency-Key is not repeated: it might have been applied.
            if not (_dropped_unanswered(e) and (method in _SAFE or "Idempotency-Key" in headers)):
                raise
            response = self.http.request(method, url, headers=headers, timeout=timeout, **kwargs)
        self.last_response = response  # e.g. its Idempotent-Replayed header
        body = response.json() if response.content else None
        if not response.ok:
            raise ApiError(response.status_code, body)
        return body

    # admin
    def create_copilot(self, spec: dict[str, Any]) -> Copilot:
        return Copilot.model_validate(self._call("POST", "/admin/copilots", admin=True, json=spec))

    def get_copilot(self, copilot_id: str) -> Copilot:
        return Copilot.model_validate(
            self._call("GET", f"/admin/copilots/{copilot_id}", admin=True)
        )

    def update_copilot(self, copilot_id: str, patch: dict[str, Any]) -> Copilot:
        return Copilot.model_validate(
            self._call("PATCH", f"/admin/copilots/{copilot_id}", admin=True, json=patch)
        )

    def list_copilots(self) -> list[Copilot]:
        body = self._call("GET", "/admin/copilots", admin=True)
        return [Copilot.model_validate(c) for c in body["copilots"]]

    def documents(self, copilot_id: str) -> list[DocumentStatus]:
        body = self._call("GET", f"/admin/copilots/{copilot_id}/documents", admin=True)
        return [DocumentStatus.model_validate(d) for d in body["documents"]]

    def reindex(self, copilot_id: str) -> dict[str, Any]:
        return dict(self._call("POST", f"/admin/copilots/{copilot_id}/reindex", admin=True))

    def retry_documents(self, copilot_id: str, keys: list[str] | None = None) -> RetryResult:
        body = self._call(
            "POST",
            f"/admin/copilots/{copilot_id}/documents/retry",
            admin=True,
            json={"keys": keys or []},
        )
        return RetryResult.model_validate(body)

    def calibration(self, copilot_id: str, questions: list[LabelledQuestion]) -> CalibrationResult:
        """The copilot's measure of labelled questions (at most calibration.MAX_BATCH)."""
        body = self._call(
            "POST",
            f"/admin/copilots/{copilot_id}/calibration",
            admin=True,
            json=CalibrationRequest(questions=questions).model_dump(mode="json"),
        )
        return CalibrationResult.model_validate(body)

    def analytics(
        self, copilot_id: str, since: str = "7d", until: str | None = None, top: int = 10
    ) -> AnalyticsReport:
        params = {"since": since, "top": top, **({"until": until} if until else {})}
        body = self._call(
            "GET", f"/admin/copilots/{copilot_id}/analytics", admin=True, params=params
        )
        return AnalyticsReport.model_validate(body)

    def transcripts(
        self, copilot_id: str, since: str = "7d", until: str | None = None, fmt: str = "jsonl"
    ) -> str:
        """The period's conversations, redacted, as JSON lines or CSV (the body as text)."""
        params = {"since": since, "format": fmt, **({"until": until} if until else {})}
        headers = {"X-Admin-Key": self.admin_key} if self.admin_key else {}
        url = f"{self.base_url}/admin/copilots/{copilot_id}/transcripts"
        response = self.http.get(url, params=params, headers=headers, timeout=self.timeout)
        self.last_response = response
        if not response.ok:
            raise ApiError(response.status_code, response.json() if response.content else None)
        return response.text

    # conversations
    def start(
        self,
        copilot_id: str,
        variables: dict[str, str] | None = None,
        idempotency_key: str | None = None,
    ) -> StartConversationResponse:
        """``idempotency_key``: send the same random key (e.g. uuid4) on a retry to get the
        same conversation back instead of a second one."""
        body = {"variables": variables} if variables else {}
        return StartConversationResponse.model_validate(
            self._call(
                "POST",
                f"/copilots/{copilot_id}/conversations",
                json=body,
                headers=_idempotency(idempotency_key),
            )
        )

    def send(
        self, conversation_id: str, token: str, text: str, idempotency_key: str | None = None
    ) -> TurnResponse:
        """``idempotency_key``: send the same random key on a retry of this message, so it is
        stored once however often it is sent."""
        return TurnResponse.model_validate(
            self._call(
                "POST",
                f"/conversations/{conversation_id}/messages",
                token=token,
                json={"text": text},
                headers=_idempotency(idempotency_key),
            )
        )

    def messages(
        self, conversation_id: str, token: str, after: int = 0, wait: int = 0
    ) -> MessagesPage:
        """Messages after ``after``; with ``wait`` (seconds), a long-poll that answers as soon
        as there is one (or with none when the wait is over)."""
        params = {"after": after, **({"wait": wait} if wait else {})}
        return MessagesPage.model_validate(
            self._call(
                "GET",
                f"/conversations/{conversation_id}/messages",
                token=token,
                params=params,
                timeout=max(self.timeout, wait + 10),  # the wait, then the answer's own time
            )
        )

    def feedback(
        self, conversation_id: str, token: str, seq: int, rating: str, comment: str | None = None
    ) -> dict[str, Any]:
        body = {"rating": rating, **({"comment": comment} if comment else {})}
        path = f"/conversations/{conversation_id}/messages/{seq}/feedback"
        return dict(self._call("POST", path, token=token, json=body))

    def survey(
        self, conversation_id: str, token: str, score: int, comment: str | None = None
    ) -> dict[str, Any]:
        body = {"score": score, **({"comment": comment} if comment else {})}
        path = f"/conversations/{conversation_id}/survey"
        return dict(self._call("POST", path, token=token, json=body))

    def cancel_handoff(self, conversation_id: str, token: str) -> TurnResponse:
        return TurnResponse.model_validate(
            self._call("POST", f"/conversations/{conversation_id}/handoff/cancel", token=token)
        )


_SAFE = frozenset({"GET", "HEAD", "OPTIONS"})


def _dropped_unanswered(error: BaseException, depth: int = 0) -> bool:
    """The connection closed before any answer (not a refused connection or a timeout):
    requests wraps urllib3's ProtocolError('Connection aborted.', RemoteDisconnected(...))."""
    if isinstance(error, (http.client.RemoteDisconnected, ConnectionResetError)):
        return True
    inner = [a for a in error.args if isinstance(a, BaseException)]
    return depth < 4 and any(_dropped_unanswered(a, depth + 1) for a in inner)


def _idempotency(key: str | None) -> dict[str, str]:
    return {"Idempotency-Key": key} if key else {}
