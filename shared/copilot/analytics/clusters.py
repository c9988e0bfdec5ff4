"""Unanswered questions grouped by meaning, for the report's "top unanswered questions".

``cluster_questions`` takes the questions the copilot had no answer for, as asked (repeats
included), and returns the biggest groups of questions that mean the same thing, each with
how often it was asked, its most central question as a label and a few examples.

How:

1. Dedup: questions are compared as ``normalise`` writes them (casefolded, whitespace
   collapsed, sentence-final punctuation stripped), so "Refund?" and "refund" are one
   distinct question. Each distinct question is shown as it was asked most often (tidied of
   extra whitespace; ties: the smaller text).
2. At most ``max_distinct`` distinct questions are grouped: the most frequent ones (ties: by
   normalised text). The rarer rest, and questions with nothing but punctuation, are counted
   in no group, so the counts can add up to less than the input.
3. Each distinct question is embedded once (one ``embed_documents`` call), and the vectors
   compared by cosine similarity.
4. Agglomerative clustering, average linkage: the two groups with the highest average
   pairwise similarity merge, while that average is at least ``threshold``. Every distinct
   question has one vote in the average, however often it was asked. Ties go to the more
   frequent question, then to the smaller normalised text, so the result does not depend on
   the input's order. O(n^2) memory and about O(n^2) time: 2,000 distinct questions take well
   under a second once embedded.

The threshold depends on the embedder: the same paraphrases score higher with some models than
with others. ``MINILM_THRESHOLD`` (the default) and ``WORDLLAMA_THRESHOLD`` were chosen on
labelled paraphrase groups of customer-support questions, for the product's two offline
embedders (``copilot.adapters.providers.offline``); another embedder needs its own.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from langchain_core.embeddings import Embeddings

# Average-linkage cosine similarity at which groups still merge, per offline embedder: the
# best precision-weighted pairwise F-score (F0.5: a wrong merge hides a question, a split only
# shows it twice) over random draws of labelled customer-support paraphrases (12 intents with
# near neighbours such as cancelling an order or a subscription, and one-off questions).
# MiniLM at 0.45: pairwise precision 0.90, recall 0.77; WordLlama at 0.35: 0.84 and 0.65.
MINILM_THRESHOLD = 0.45  # all-MiniLM-L6-v2 (COPILOT_EMBEDDER=minilm, the default)
WORDLLAMA_THRESHOLD = 0.35  # WordLlama, 256 dimensions (COPILOT_EMBEDDER=wordllama)

# Stripped from the end of a question before comparing: sentence-final punctuation only (not
# "%", ")" or quotes, which can carry meaning), in the scripts customers write (escaped: the
# fullwidth question mark, exclamation mark, comma, semicolon and colon, the Arabic question mark).
_TRAILING = " \t\n\r.?!,;:…。\uff1f\uff01\uff0c\uff1b\uff1a\u061f‽⁇⁈⁉"


@dataclass(frozen=True)
class QuestionCluster:
    """One group of unanswered questions that mean the same thing."""

    label: str  # the most central question's text (the medoid), as asked
    count: int  # how many times questions of this group were asked (with repeats)
    examples: list[str]  # up to `examples` distinct questions, most frequent first, label first


def normalise(question: str) -> str:
    """The form questions are deduplicated in: casefolded, whitespace collapsed, sentence-final
    punctuation stripped ("  How do I get a REFUND?? " -> "how do i get a refund")."""
    return " ".join(question.casefold().split()).rstrip(_TRAILING)


def cluster_questions(
    questions: Sequence[str],
    embedder: Embeddings,
    *,
    threshold: float = MINILM_THRESHOLD,
    examples: int = 3,
    limit: int = 20,
    max_distinct: int = 2000,
) -> list[QuestionCluster]:
    """The ``limit`` biggest groups of ``questions`` by meaning, biggest first (ties: by label).

    ``questions`` are the raw unanswered questions, repeats included: a group's ``count`` is
    how many of them it holds. Only the ``max_distinct`` most frequent distinct questions are
    grouped (see the module's docstring); the others are in no group. ``threshold`` is the
    average cosine similarity two groups need to merge: higher, tighter groups.
    """
    if examples < 1:
        raise ValueError("examples must be at least 1")
    if limit < 0 or max_distinct < 0:
        raise ValueError("limit and max_distinct must not be negative")
    counts: Counter[str] = Counter()  # normalised text -> times asked
    forms: dict[str, Counter[str]] = {}  # normalised text -> how it was written -> times
    for question in questions:
        key = normalise(question)
        if key:
            counts[key] += 1
            forms.setdefault(key, Counter())[" ".join(question.split())] += 1
    if not counts or not limit or not max_distinct:
        return []
    # Most frequent first, then by text: the order every tie below is broken in.
    keys = sorted(counts, key=lambda k: (-counts[k], k))[:max_distinct]
    shown = [_most_asked(forms[k]) for k in keys]
    weights = np.array([counts[k] for k in keys], dtype=np.float64)

    vectors = np.asarray(embedder.embed_documents(shown), dtype=np.float64)
    if vectors.shape[0] != len(shown):
        raise ValueError(f"the embedder returned {vectors.shape[0]} vectors for {len(shown)}")
    vectors /= np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    similarity = vectors @ vectors.T
    similarity = (similarity + similarity.T) / 2  # exactly symmetric, whatever the BLAS does

    groups = _average_linkage(similarity.copy(), threshold)
    clusters = []
    for members in groups:
        # The medoid of the questions as asked: the closest, summed over every time a member
        # was asked, to the group (ties: the more frequent, then the smaller text).
        centrality = similarity[np.ix_(members, members)] @ weights[members]
        medoid = members[int(np.argmax(centrality))]
        rest = [m for m in members if m != medoid]  # members are in frequency order
        clusters.append(
            QuestionCluster(
                label=shown[medoid],
                count=int(weights[members].sum()),
                examples=[shown[m] for m in [medoid, *rest][:examples]],
            )
        )
    clusters.sort(key=lambda c: (-c.count, c.label))
    return clusters[:limit]


def _most_asked(forms: Counter[str]) -> str:
    """The way a question was written most often (ties: the smaller text)."""
    return min(forms, key=lambda form: (-forms[form], form))


def _average_linkage(similarity: np.ndarray, threshold: float) -> list[list[int]]:
    """Average-linkage groups of the items of a (symmetric) similarity matrix, merged while
    their average similarity is at least ``threshold``; each group's members ascending.

    Overwrites ``similarity``. Each row's best partner is cached and a merge updates only what
    it changed (Lance-Williams), so a merge costs O(n) but for the rows whose best partner was
    one of the two merged groups. Ties go to the lower index."""
    n = similarity.shape[0]
    np.fill_diagonal(similarity, -np.inf)
    sizes = np.ones(n, dtype=np.float64)
    members: dict[int, list[int]] = {i: [i] for i in range(n)}
    partner = np.argmax(similarity, axis=1) if n else np.zeros(0, dtype=np.intp)
    best = similarity[np.arange(n), partner]
    while n > 1:
        a = int(np.argmax(best))  # the lower index of the best pair: the matrix is symmetric
        if not best[a] >= threshold:
            break
        b = int(partner[a])
        i, j = min(a, b), max(a, b)  # the group of the more frequent question lives on
        merged = (sizes[i] * similarity[i] + sizes[j] * similarity[j]) / (sizes[i] + sizes[j])
        merged[[i, j]] = -np.inf
        similarity[i], similarity[:, i] = merged, merged
        similarity[j], similarity[:, j] = -np.inf, -np.inf
        sizes[i] += sizes[j]
        members[i] += members.pop(j)
        best[j] = -np.inf
        # Rows that pointed at i or j: their best may have dropped; look again.
        stale = np.flatnonzero((partner == i) | (partner == j))
        stale = np.union1d(stale, [i])
        stale = stale[stale != j]
        # Every other row: the merged group may now be its best.
        closer = (merged > best) | ((merged == best) & (i < partner))
        closer[stale] = False
        closer[j] = False
        partner[closer], best[closer] = i, merged[closer]
        if stale.size:
            partner[stale] = np.argmax(similarity[stale], axis=1)
            best[stale] = similarity[stale, partner[stale]]
    return [sorted(group) for _, group in sorted(members.items())]
