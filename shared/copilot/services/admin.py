"""Copilot administration: create, read, update, list; knowledge document status."""

from __future__ import annotations

import builtins

from copilot.errors import ConflictError, NotFoundError
from copilot.models import (
    BehaviourMessages,
    Copilot,
    CopilotPatch,
    CopilotSpec,
    DocumentStatus,
    new_id,
    utcnow,
)
from copilot.ports import CopilotRegistry, DocumentStore


class AdminService:
    def __init__(self, copilots: CopilotRegistry, documents: DocumentStore) -> None:
        self._copilots = copilots
        self._documents = documents

    def create(self, spec: CopilotSpec, copilot_id: str | None = None) -> Copilot:
        now = utcnow()
        copilot = Copilot(
            **spec.model_dump(),
            copilot_id=copilot_id or new_id(),
            created_at=now,
            updated_at=now,
            version=1,
        )
        self._copilots.create(copilot)
        return copilot

    def get(self, copilot_id: str) -> Copilot:
        copilot = self._copilots.get(copilot_id)
        if copilot is None:
            raise NotFoundError(f"no copilot with id '{copilot_id}'")
        return copilot

    def list(self) -> list[Copilot]:
        return self._copilots.list()

    def update(self, copilot_id: str, patch: CopilotPatch) -> Copilot:
        for _ in range(5):
            current = self.get(copilot_id)
            changes = patch.model_dump(exclude_unset=True, exclude={"messages"})
            if patch.messages is not None:
                merged = current.messages.model_dump() | patch.messages.model_dump(
                    exclude_unset=True, exclude_none=True
                )
                changes["messages"] = BehaviourMessages(**merged)
            updated = current.model_copy(
                update={**changes, "version": current.version + 1, "updated_at": utcnow()}
            )
            # Re-validate the merged whole (e.g. topic names unique across the new list).
            updated = Copilot.model_validate(updated.model_dump())
            try:
                self._copilots.replace(updated, expected_version=current.version)
                return updated
            except ConflictError:
                continue
        raise ConflictError("the copilot is being changed by someone else; try again")

    def documents(self, copilot_id: str) -> builtins.list[DocumentStatus]:
        self.get(copilot_id)
        return sorted(self._documents.list(copilot_id), key=lambda d: d.doc_key)
