"""Mirror a document set into a bucket prefix: what websites and knowledge bases share.

A source works out what its prefix should hold (a key, body, metadata and fingerprint per
document) and which stored documents are gone; the mirror writes only what is new or changed,
deletes what it is told, and reports every key it touched. Writing an object triggers its
indexing and deleting one removes it from the index, so an unchanged document must cost
nothing: it is skipped when its fingerprint equals the stored one.

Fingerprints are the source's choice: knowledge bases use the body's MD5, which the listing
already carries as the ETag; websites keep a hash of the main content in their state, because
a page's bytes change on every request (timestamps, tokens) while its content does not.
A storage failure on one document is recorded (``transient`` when a later run may succeed) and
the others go on.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from copilot.errors import CopilotError, UnavailableError
from copilot.ports import BlobStore

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class MirroredDocument:
    name: str  # what a failure names: the page URL, the article id
    key: str
    body: bytes
    content_type: str
    metadata: dict[str, str]
    fingerprint: str


@dataclass(frozen=True)
class MirrorFailure:
    name: str
    key: str
    reason: str
    transient: bool


@dataclass
class PrefixMirror:
    """One pass over ``prefix``. ``fingerprints``: key -> fingerprint of the stored version
    (default: the listing's ETags); only keys that still exist are believed."""

    blobs: BlobStore
    prefix: str
    fingerprints: dict[str, str] = field(default_factory=dict)
    stored: set[str] = field(default_factory=set)  # keys under the prefix before this pass
    added: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    failures: list[MirrorFailure] = field(default_factory=list)

    @classmethod
    def open(
        cls, blobs: BlobStore, prefix: str, fingerprints: Mapping[str, str] | None = None
    ) -> PrefixMirror:
        etags = {o.key: o.etag.strip('"') for o in blobs.list(prefix)}
        known = etags if fingerprints is None else fingerprints
        return cls(
            blobs,
            prefix,
            fingerprints={k: v for k, v in known.items() if k in etags},
            stored=set(etags),
        )

    def write(self, document: MirroredDocument) -> None:
        key = document.key
        if key in self.stored and self.fingerprints.get(key) == document.fingerprint:
            self.unchanged.append(key)
            return
        try:
            self.blobs.put(key, document.body, document.content_type, document.metadata)
        except CopilotError as e:
            self._fail(document.name, key, e)
            return
        self.fingerprints[key] = document.fingerprint
        (self.updated if key in self.stored else self.added).append(key)

    def remove(self, doomed: Iterable[tuple[str, str]]) -> None:
        """Delete stored documents, given as (key, name) pairs."""
        for key, name in doomed:
            if key not in self.stored:
                continue
            try:
                self.blobs.delete(key)
            except CopilotError as e:
                self._fail(name, key, e)
                continue
            self.fingerprints.pop(key, None)
            self.removed.append(key)

    def _fail(self, name: str, key: str, error: CopilotError) -> None:
        log.warning("mirror %s: %s failed: %s", self.prefix, key, error.message)
        transient = isinstance(error, UnavailableError)
        self.failures.append(MirrorFailure(name, key, error.message, transient))
