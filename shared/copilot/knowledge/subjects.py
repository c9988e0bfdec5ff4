"""What the customer is talking about: the place, product or plan a conversation is about,
found in the copilot's own knowledge and carried from turn to turn.

A *subject* is a name that several documents' titles share as one of their parts: "KIRKWOOD
HOUSE: Is there free parking?", "KIRKWOOD HOUSE: review 3" are about Kirkwood House; "Mental
Health Care | VA Central Arkansas Health Care | Veterans Affairs" is about both of its last
parts. Nothing is listed by hand: the subjects are read from the titles the index holds, once
per lexical index (each time its segments change). A name every other document shares (a site's name on all its pages)
tells no document apart and is no subject.

A customer *mentions* a subject by its whole name ("the kirkwood house hotel") or by a word of
its name that occurs in no other document ("Kymmoy"). Retrieval then answers from that
subject's documents and from documents about no subject, never from another subject's: "Do
they charge for wifi?" after "I'm looking for Warkworth House" must not be answered with the
wifi entry of another guest house, however alike the two are.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from copilot.text import STOPWORDS, analyze

if TYPE_CHECKING:
    from copilot.knowledge.lexical import LexicalIndex

# A title's parts: "NAME: question", "Page | Site", "Page – Site", "Page - Site".
_TITLE_PARTS = re.compile(r"\s*(?::\s|\s\|\s|\s[–—-]\s)\s*")
_WORD = re.compile(r"[^\W_]+")
MAX_NAME_WORDS = 6
MAX_NAME_CHARS = 60
MAX_SHARE = 0.9  # a name on (nearly) every document, a site's, tells none apart
NAME_SHARE = 0.8  # of a word's uses about what is named with it: the word is a name's
MIN_WORD_CHARS = 4  # a single word of a name that stands for it: "kymmoy", not "inn"


def subjects_of(lexical: LexicalIndex) -> SubjectIndex:
    """The subjects a lexical index's titles name, read once per index (set of segments)."""
    found = lexical.derived.get("subjects")
    if not isinstance(found, SubjectIndex):
        found = lexical.derived["subjects"] = SubjectIndex.build(lexical)
    return found


def _name_tokens(text: str) -> list[str]:
    """The words of a name or a message, their case kept: apostrophes dropped ("Nando's"
    is "Nandos"), "&" read as "and"."""
    return _WORD.findall(re.sub(r"['’`]", "", text.replace("&", " and ")))


def name_words(text: str) -> list[str]:
    """``_name_tokens``, lower-case."""
    return [w.lower() for w in _name_tokens(text)]


@dataclass(frozen=True)
class Subject:
    name: str  # as a customer reads it: "Kirkwood House"
    key: str  # its words, space-separated: "kirkwood house"
    docs: frozenset[str]  # the documents about it (doc keys)


@dataclass
class SubjectIndex:
    subjects: dict[str, Subject] = field(default_factory=dict)  # by key
    _by_first: dict[str, list[tuple[tuple[str, ...], Subject]]] = field(
        default_factory=dict, repr=False
    )
    _by_word: dict[str, Subject] = field(default_factory=dict, repr=False)
    _of_doc: dict[str, list[Subject]] = field(default_factory=dict, repr=False)
    # Names made only of words the knowledge uses about other things too ("Home", "About",
    # "Our Work"): a mention counts only when written as a name, capitalised.
    _common: set[str] = field(default_factory=set, repr=False)

    def __bool__(self) -> bool:
        return bool(self.subjects)

    @classmethod
    def build(cls, lexical: LexicalIndex) -> SubjectIndex:
        titles = dict(sorted(lexical.titles().items()))
        named: dict[str, set[str]] = defaultdict(set)
        shown: dict[str, str] = {}
        for doc_key, title in titles.items():
            parts = _TITLE_PARTS.split(title.strip())
            if len(parts) < 2:
                continue  # a title of one part names its own page, not a shared subject
            for part in parts:
                words = name_words(part)
                if not words or len(words) > MAX_NAME_WORDS or len(part) > MAX_NAME_CHARS:
                    continue
                if not _name_like(part):
                    continue
                key = " ".join(words)
                named[key].add(doc_key)
                shown.setdefault(key, _display(part))
        index = cls()
        total = len(titles)
        for key, docs in named.items():
            if len(docs) >= 2 and len(docs) < MAX_SHARE * total:
                index.subjects[key] = Subject(shown[key], key, frozenset(docs))
        index._link(lexical)
        return index

    def _link(self, lexical: LexicalIndex) -> None:
        word_owners: dict[str, list[Subject]] = defaultdict(list)
        for subject in self.subjects.values():
            words = tuple(subject.key.split())
            if words[0] == "the" and len(words) > 1:
                words = words[1:]  # "The Nirala" is also just "Nirala"
            self._by_first.setdefault(words[0], []).append((words, subject))
            for doc in subject.docs:
                self._of_doc.setdefault(doc, []).append(subject)
            for word in set(words):
                word_owners[word].append(subject)

        def only_about(word: str, subject: Subject) -> bool:
            """The knowledge uses the word for nothing but the subject."""
            terms = analyze(word)
            spreads = [lexical.term_spread(term, subject.docs) for term in terms]
            return bool(terms) and all(inside == total for inside, total in spreads)

        for word, owners in word_owners.items():
            if len(owners) != 1 or len(word) < MIN_WORD_CHARS or word in STOPWORDS:
                continue
            if only_about(word, owners[0]):
                self._by_word[word] = owners[0]
        named_in: dict[str, set[str]] = defaultdict(set)  # word -> docs of names holding it
        for word, owners in word_owners.items():
            for owner in owners:
                named_in[word] |= owner.docs

        def a_name(word: str) -> bool:
            """The knowledge uses the word mostly about what is named with it ("Nandos"
            about both Nandos), not as a common word ("home", "work", "about")."""
            spreads = [lexical.term_spread(term, named_in[word]) for term in analyze(word)]
            inside, total = sum(i for i, _ in spreads), sum(t for _, t in spreads)
            return total > 0 and inside >= NAME_SHARE * total

        for subject in self.subjects.values():
            content = [w for w in subject.key.split() if w not in STOPWORDS and len(w) > 1]
            if not any(a_name(w) for w in content):
                self._common.add(subject.key)

    def mentioned(self, text: str) -> list[Subject]:
        """The subjects a message names, in the order it names them (the longest name wins
        where two overlap: "Nandos City Centre", not "Nandos")."""
        words = name_words(text)
        capitalised = [w[:1].isupper() for w in _name_tokens(text)]
        found: list[tuple[int, int, Subject]] = []
        for i, word in enumerate(words):
            for name, subject in self._by_first.get(word, ()):
                if tuple(words[i : i + len(name)]) != name:
                    continue
                if subject.key in self._common and not _written_as_name(
                    words[i : i + len(name)], capitalised[i : i + len(name)]
                ):
                    continue  # "at my home" is no mention of a page called "Home"
                found.append((i, i + len(name), subject))
            alone = self._by_word.get(word)
            if alone is not None:
                found.append((i, i + 1, alone))
        found.sort(key=lambda f: (f[0], -(f[1] - f[0])))
        kept: list[tuple[int, int, Subject]] = []
        for start, end, subject in found:
            if any(s <= start and end <= e for s, e, _ in kept):
                continue
            kept.append((start, end, subject))
        out: list[Subject] = []
        for _, _, subject in kept:
            if subject not in out:
                out.append(subject)
        return out

    def named(self, keys: Iterable[str]) -> list[Subject]:
        """The subjects still known by these keys (the knowledge may have changed since)."""
        return [self.subjects[k] for k in keys if k in self.subjects]

    def of_doc(self, doc_key: str) -> Sequence[Subject]:
        return self._of_doc.get(doc_key, ())

    def scope(self, subjects: Sequence[Subject]) -> Scope:
        """Answer from these subjects' documents, from the documents of what those are
        part of too (the court a page of the court's site names besides its own topic),
        and from documents about no subject; never from another subject's."""
        # "NASA" is also the NASA of "NASA Jet Propulsion Laboratory": a shorter name
        # stands for the longer names that hold it.
        named = {s.key for s in subjects}
        subjects = [
            *subjects,
            *(
                longer
                for longer in self.subjects.values()
                if longer.key not in named and any(_holds(longer.key, key) for key in named)
            ),
        ]
        own = frozenset().union(*(s.docs for s in subjects))
        wider = {w.key for d in own for w in self._of_doc.get(d, ())}
        return Scope(
            subjects=tuple(subjects),
            docs=own,
            excluded=frozenset(
                d for d, about in self._of_doc.items() if not any(s.key in wider for s in about)
            ),
        )


@dataclass(frozen=True)
class Scope:
    subjects: tuple[Subject, ...]
    docs: frozenset[str]  # the subjects' documents: searched on their own as well
    excluded: frozenset[str]  # other subjects' documents: never answered from

    def allows(self, doc_key: str) -> bool:
        return doc_key not in self.excluded

    def without_names(self, text: str) -> str:
        """The message without the words of the subjects' names."""
        names = {w for s in self.subjects for w in s.key.split()}
        return " ".join(w for w in name_words(text) if w not in names)


def _holds(longer: str, shorter: str) -> bool:
    return f" {shorter} " in f" {longer} "


def _written_as_name(words: Sequence[str], capitalised: Sequence[bool]) -> bool:
    """Most of the name's words are capitalised as the customer wrote them ("the City Stop
    restaurant")."""
    content = [c for w, c in zip(words, capitalised, strict=True) if w not in STOPWORDS]
    return bool(content) and 2 * sum(content) >= len(content)


def _name_like(part: str) -> bool:
    """A name, not a sentence: its words are capitalised ("Kirkwood House", "VA Central
    Arkansas Health Care", "KIRKWOOD HOUSE"), so "Is there outdoor seating?" or "review 3",
    parts many FAQ titles share, are no subjects."""
    if part.rstrip().endswith("?"):
        return False
    words = [w for w in re.findall(r"[^\W\d_][\w'’]*", part)]
    content = [w for w in words if w.lower() not in STOPWORDS]
    return bool(content) and all(w[0].isupper() for w in content)


def _display(part: str) -> str:
    """ "KIRKWOOD HOUSE" reads as "Kirkwood House"; a name in mixed case stays as written."""
    return " ".join(w.capitalize() for w in part.split()) if part.isupper() else part
