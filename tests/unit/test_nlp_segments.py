"""Long texts reach the model in segments: the cut must lose nothing and keep each piece bounded."""

from __future__ import annotations

import pytest

from enrich.nlp import split_segments


def test_short_text_is_one_segment() -> None:
    assert split_segments("one line\nanother", size=100) == ["one line\nanother"]


@pytest.mark.parametrize("size", [64, 101, 200])
def test_segments_join_to_the_text_and_respect_the_size(size: int) -> None:
    text = "\n".join(f"Line {i} holds a few words about harbours and lighthouses." for i in range(40))
    pieces = split_segments(text, size=size)
    assert "".join(pieces) == text
    assert len(pieces) > 1
    assert all(len(piece) <= size for piece in pieces)
    # every cut but the last falls right after a line break
    assert all(piece.endswith("\n") for piece in pieces[:-1])


def test_a_line_without_breaks_is_cut_at_spaces_then_hard() -> None:
    words = " ".join(["word"] * 100)
    pieces = split_segments(words, size=50)
    assert "".join(pieces) == words
    assert all(piece.endswith(" ") for piece in pieces[:-1])
    solid = "x" * 130
    assert split_segments(solid, size=50) == ["x" * 50, "x" * 50, "x" * 30]
