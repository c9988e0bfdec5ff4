"""Turn a knowledge file into titled, sectioned chunks (Markdown and plain text for now)."""

from __future__ import annotations

import hashlib
import posixpath
import re
from dataclasses import dataclass

from copilot.errors import PermanentIngestError
from copilot.models import Chunk

TEXT_TYPES = {".md": "markdown", ".markdown": "markdown", ".txt": "text", ".text": "text"}
TARGET_CHARS = 1200
MAX_CHARS = 1800

_HEADING = re.compile(r"^(#{1,6})\s+(.+?)\s*#*\s*$")


@dataclass
class Section:
    path: list[str]
    text: str


def supported_extensions() -> list[str]:
    return sorted(TEXT_TYPES)


def chunk_document(copilot_id: str, doc_key: str, body: bytes, version: str | None) -> list[Chunk]:
    ext = posixpath.splitext(doc_key)[1].lower()
    kind = TEXT_TYPES.get(ext)
    if kind is None:
        raise PermanentIngestError(
            f"unsupported file type '{ext or '(none)'}': supported types are "
            + ", ".join(supported_extensions())
        )
    text = decode_text(body)
    if not text.strip():
        raise PermanentIngestError("the file is empty: there is no text to index")
    file_title = _title_from_key(doc_key)
    if kind == "markdown":
        title, sections = split_markdown(text, file_title)
    else:
        title, sections = file_title, [Section(path=[], text=text)]
    chunks: list[Chunk] = []
    for section in sections:
        for piece in split_long(section.text):
            position = len(chunks)
            chunks.append(
                Chunk(
                    chunk_id=chunk_id(copilot_id, doc_key, position, version),
                    copilot_id=copilot_id,
                    doc_key=doc_key,
                    position=position,
                    text=piece,
                    title=title,
                    section=" > ".join(section.path) or None,
                    version=version,
                )
            )
    return chunks


def chunk_id(copilot_id: str, doc_key: str, position: int, version: str | None) -> str:
    raw = f"{copilot_id}\x1f{doc_key}\x1f{position}\x1f{version or ''}"
    return hashlib.sha256(raw.encode()).hexdigest()[:40]


def decode_text(body: bytes) -> str:
    if b"\x00" in body[:8192]:
        raise PermanentIngestError("the file looks binary (it contains NUL bytes), not text")
    for encoding in (
        ("utf-8-sig", "utf-16") if body[:2] in (b"\xff\xfe", b"\xfe\xff") else ("utf-8-sig",)
    ):
        try:
            return body.decode(encoding)
        except UnicodeDecodeError:
            continue
    raise PermanentIngestError(
        "the file is not valid UTF-8 text; save it as UTF-8 and upload again"
    )


def split_markdown(text: str, fallback_title: str) -> tuple[str, list[Section]]:
    title = fallback_title
    stack: list[tuple[int, str]] = []
    sections: list[Section] = []
    buffer: list[str] = []
    in_fence = False

    def flush() -> None:
        body = "\n".join(buffer).strip()
        if body:
            sections.append(Section(path=[h for _, h in stack], text=body))
        buffer.clear()

    for line in text.splitlines():
        if line.lstrip().startswith("```"):
            in_fence = not in_fence
        match = None if in_fence else _HEADING.match(line)
        if match:
            flush()
            level, heading = len(match.group(1)), match.group(2).strip()
            if level == 1 and title == fallback_title and not sections and not stack:
                title = heading
                continue
            while stack and stack[-1][0] >= level:
                stack.pop()
            stack.append((level, heading))
        else:
            buffer.append(line)
    flush()
    return title, sections


def split_long(text: str) -> list[str]:
    """Pack paragraphs into chunks of about TARGET_CHARS, splitting oversize paragraphs."""
    if len(text) <= MAX_CHARS:
        return [text]
    paragraphs = [p.strip() for p in re.split(r"\n\s*\n", text) if p.strip()]
    pieces: list[str] = []
    current = ""
    for para in paragraphs:
        for part in _hard_wrap(para):
            if current and len(current) + len(part) + 2 > TARGET_CHARS:
                pieces.append(current)
                current = part
            else:
                current = f"{current}\n\n{part}" if current else part
    if current:
        pieces.append(current)
    return pieces


def _hard_wrap(paragraph: str) -> list[str]:
    if len(paragraph) <= MAX_CHARS:
        return [paragraph]
    out: list[str] = []
    current = ""
    for sentence in re.split(r"(?<=[.!?])\s+", paragraph):
        while len(sentence) > MAX_CHARS:
            out.append(sentence[:MAX_CHARS])
            sentence = sentence[MAX_CHARS:]
        if current and len(current) + len(sentence) + 1 > TARGET_CHARS:
            out.append(current)
            current = sentence
        else:
            current = f"{current} {sentence}" if current else sentence
    if current:
        out.append(current)
    return out


def _title_from_key(doc_key: str) -> str:
    stem_ = posixpath.splitext(posixpath.basename(doc_key))[0]
    return re.sub(r"[-_]+", " ", stem_).strip().capitalize() or doc_key
