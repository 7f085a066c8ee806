"""How a search's words become a tsquery (svc_course.search.build_tsquery): pure logic over the
rows the vocabulary statement returns, (word, term, similarity, completes)."""

from __future__ import annotations

from svc_course.search import COMPLETIONS, build_tsquery


def test_words_before_the_last_match_as_typed_and_the_last_is_completed() -> None:
    rows = [
        ("data", "data", 1.0, False),
        ("scien", "science", 0.5, False),
        ("scien", "science", None, True),
        ("scien", "scientific", None, True),
    ]
    # "data" is a known term (no corrections) and not last: exact. "scien" is being typed.
    assert build_tsquery(rows) == "('data') & ('scien' | 'science' | 'scientific')"


def test_a_typo_is_ored_with_its_close_terms_once() -> None:
    rows = [
        ("pyhton", "python", 0.27, False),
        ("pyhton", "photon", 0.2, False),
        ("pyhton", None, None, True),
    ]
    # "photon" is below MIN_SIMILARITY; a completion is never repeated as a correction.
    assert build_tsquery(rows) == "('pyhton' | 'python')"
    rows.append(("pyhton", "python", None, True))
    assert build_tsquery(rows) == "('pyhton' | 'python')"


def test_a_prefix_with_too_many_completions_falls_back_to_a_prefix_match() -> None:
    rows = [("pro", f"pro{i:02d}", None, True) for i in range(COMPLETIONS + 1)]
    rows.append(("pro", "pro", 1.0, False))
    assert build_tsquery(rows) == "('pro':*)"
    # At the cap, the word and every completion are listed.
    assert build_tsquery(rows[:COMPLETIONS] + rows[-1:]).count("|") == COMPLETIONS


def test_quotes_are_data_and_one_letter_words_are_dropped() -> None:
    assert build_tsquery([("o'reilly", "o'reilly", 1.0, False)]) == "('o''reilly')"
    assert build_tsquery([("a", None, None, False)]) is None


def test_cjk_words_also_match_their_character_pairs() -> None:
    rows = [("語入門", None, None, False)]
    assert build_tsquery(rows) == "('語入門' | ('語入' & '入門'))"
