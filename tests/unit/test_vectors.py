from __future__ import annotations

import pytest

from copilot.knowledge.vectors import cosine, cosines, pack, pack_all, similarities


def test_cosine_is_the_angle_not_the_length() -> None:
    assert cosine([1.0, 0.0], [5.0, 0.0]) == pytest.approx(1.0)
    assert cosine([1.0, 0.0], [0.0, 2.0]) == pytest.approx(0.0)
    assert cosine([1.0, 1.0], [-1.0, -1.0]) == pytest.approx(-1.0)
    assert cosine([3.0, 4.0], [4.0, 3.0]) == pytest.approx(24 / 25)


def test_a_zero_vector_is_similar_to_nothing() -> None:
    assert cosine([0.0, 0.0], [1.0, 2.0]) == 0.0
    assert cosine([1.0, 2.0], [0.0, 0.0]) == 0.0


def test_vectors_of_another_dimension_are_refused() -> None:
    with pytest.raises(ValueError):
        cosine([1.0, 0.0], [1.0, 0.0, 0.0])


def test_cosines_scores_each_vector_in_order() -> None:
    scores = cosines([1.0, 0.0], [[2.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    assert list(scores) == pytest.approx([1.0, 0.0, 2**-0.5])
    assert len(cosines([1.0, 0.0], [])) == 0


def test_similarities_take_the_best_packed_vector_and_agree_with_cosine() -> None:
    query = [0.6, 0.8, 0.0]
    rows = [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]
    best, none, other_dimension = similarities(query, [pack_all(rows), None, pack([1.0, 0.0])])
    # Half precision moves a cosine by less than 0.001.
    assert best == pytest.approx(max(cosine(query, r) for r in rows), abs=1e-3)
    assert best == pytest.approx(0.8, abs=1e-3)
    assert none is None and other_dimension == 0.0
    assert similarities(query, [None, None]) == [None, None]
