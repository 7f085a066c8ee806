"""The pure grading rules, one question type at a time."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest
import re2

from elearn.quiz.v1 import quiz_service_pb2 as pb
from svc_quiz import grading


def _options(*correct: bool) -> list[pb.ChoiceOption]:
    return [
        pb.ChoiceOption(option_id=f"o{i}", text=f"option {i}", correct=c)
        for i, c in enumerate(correct)
    ]


def _mc(partial: pb.PartialCredit.ValueType, *correct: bool) -> pb.Question:
    return pb.Question(
        question_id="q",
        prompt="p",
        points=4,
        multiple_choice=pb.MultipleChoiceQuestion(
            options=_options(*correct), partial_credit=partial
        ),
    )


def _picks(*ids: str) -> pb.Answer:
    return pb.Answer(question_id="q", options=pb.OptionSelection(option_ids=list(ids)))


def test_single_choice_right_and_wrong() -> None:
    q = pb.Question(
        question_id="q", prompt="p", points=2,
        single_choice=pb.SingleChoiceQuestion(options=_options(False, True)),
    )  # fmt: skip
    right = grading.grade_answer(q, pb.Answer(question_id="q", option_id="o1"))
    wrong = grading.grade_answer(q, pb.Answer(question_id="q", option_id="o0"))
    assert (right.outcome, right.points_awarded) == (grading.CORRECT, 2)
    assert (wrong.outcome, wrong.points_awarded) == (grading.INCORRECT, 0)


def test_unanswered_question_scores_zero_as_unanswered() -> None:
    q = pb.Question(question_id="q", prompt="p", points=1, true_false=pb.TrueFalseQuestion())
    assert grading.grade_answer(q, None).outcome == grading.UNANSWERED
    assert grading.grade_answer(q, pb.Answer(question_id="q")).outcome == grading.UNANSWERED


def test_true_false() -> None:
    q = pb.Question(
        question_id="q", prompt="p", points=1,
        true_false=pb.TrueFalseQuestion(correct_answer=False),
    )  # fmt: skip
    assert grading.grade_answer(q, pb.Answer(question_id="q", true_false=False)).points_awarded == 1
    assert grading.grade_answer(q, pb.Answer(question_id="q", true_false=True)).points_awarded == 0


def test_multiple_choice_all_or_nothing() -> None:
    q = _mc(pb.PARTIAL_CREDIT_ALL_OR_NOTHING, True, True, False)
    assert grading.grade_answer(q, _picks("o0", "o1")).points_awarded == 4
    assert grading.grade_answer(q, _picks("o0")).points_awarded == 0


def test_multiple_choice_unspecified_means_all_or_nothing() -> None:
    q = _mc(pb.PARTIAL_CREDIT_UNSPECIFIED, True, True, False)
    assert grading.grade_answer(q, _picks("o0")).outcome == grading.INCORRECT


def test_multiple_choice_right_minus_wrong_floors_at_zero() -> None:
    q = _mc(pb.PARTIAL_CREDIT_RIGHT_MINUS_WRONG, True, True, False, False)
    half = grading.grade_answer(q, _picks("o0"))
    assert (half.outcome, half.points_awarded) == (grading.PARTIAL, 2)
    assert grading.grade_answer(q, _picks("o0", "o2")).points_awarded == 0
    assert grading.grade_answer(q, _picks("o2", "o3")).points_awarded == 0


def test_multiple_choice_per_option() -> None:
    q = _mc(pb.PARTIAL_CREDIT_PER_OPTION, True, False, False, False)
    # o0 picked (right), o1 picked (wrong), o2 and o3 left (right): 3 of 4 judged right.
    assert grading.grade_answer(q, _picks("o0", "o1")).points_awarded == 3


def _numeric(value: float, absolute: float = 0, relative: float = 0) -> pb.Question:
    return pb.Question(
        question_id="q", prompt="p", points=1,
        numeric=pb.NumericQuestion(
            correct_value=value, absolute_tolerance=absolute, relative_tolerance=relative
        ),
    )  # fmt: skip


def _number(x: float) -> pb.Answer:
    return pb.Answer(question_id="q", number=x)


def test_numeric_exact_absolute_and_relative_tolerance() -> None:
    assert grading.grade_answer(_numeric(3.5), _number(3.5)).outcome == grading.CORRECT
    assert grading.grade_answer(_numeric(3.5), _number(3.5001)).outcome == grading.INCORRECT
    assert grading.grade_answer(_numeric(10, absolute=0.5), _number(10.5)).points_awarded == 1
    assert grading.grade_answer(_numeric(10, absolute=0.5), _number(10.6)).points_awarded == 0
    assert grading.grade_answer(_numeric(200, relative=0.01), _number(198)).points_awarded == 1
    assert grading.grade_answer(_numeric(200, relative=0.01), _number(197.9)).points_awarded == 0


def test_numeric_non_finite_answer_is_wrong() -> None:
    assert (
        grading.grade_answer(_numeric(1, absolute=1e308), _number(float("inf"))).points_awarded == 0
    )
    assert grading.grade_answer(_numeric(1, absolute=1), _number(float("nan"))).points_awarded == 0


def _short(*accepted: pb.AcceptedAnswer) -> pb.Question:
    return pb.Question(
        question_id="q", prompt="p", points=1,
        short_answer=pb.ShortAnswerQuestion(accepted_answers=list(accepted)),
    )  # fmt: skip


def _text(t: str) -> pb.Answer:
    return pb.Answer(question_id="q", text=t)


def test_short_answer_exact_is_byte_for_byte() -> None:
    q = _short(pb.AcceptedAnswer(text="Paris", match_mode=pb.ANSWER_MATCH_MODE_EXACT))
    assert grading.grade_answer(q, _text("Paris")).outcome == grading.CORRECT
    assert grading.grade_answer(q, _text("paris")).outcome == grading.INCORRECT


def test_short_answer_normalized_folds_case_width_and_spaces() -> None:
    q = _short(pb.AcceptedAnswer(text="New  York"))
    assert grading.grade_answer(q, _text("  new york ")).outcome == grading.CORRECT
    # NFKC turns full-width letters into ASCII.
    assert grading.grade_answer(q, _text("\uff2e\uff25\uff37 YORK")).outcome == grading.CORRECT
    assert grading.grade_answer(q, _text("newyork")).outcome == grading.INCORRECT


def test_short_answer_regex_matches_fully_on_normalized_text() -> None:
    q = _short(pb.AcceptedAnswer(text=r"colou?r", match_mode=pb.ANSWER_MATCH_MODE_REGEX))
    assert grading.grade_answer(q, _text(" COLOR ")).outcome == grading.CORRECT
    assert grading.grade_answer(q, _text("colours")).outcome == grading.INCORRECT


def test_regex_runs_on_re2_in_linear_time() -> None:
    # Catastrophic for a backtracking engine: (a+)+$ against "aaaa…b".
    q = _short(pb.AcceptedAnswer(text=r"(a+)+$", match_mode=pb.ANSWER_MATCH_MODE_REGEX))
    started = time.perf_counter()
    result = grading.grade_answer(q, _text("a" * 499 + "b"))
    assert result.outcome == grading.INCORRECT
    assert time.perf_counter() - started < 0.5
    assert isinstance(grading.compile_pattern(r"(a+)+$"), re2._Regexp)


def test_regex_features_re2_refuses_raise() -> None:
    with pytest.raises(re2.error):
        grading.compile_pattern(r"(a)\1")


def test_short_answer_fuzzy_threshold() -> None:
    q = _short(pb.AcceptedAnswer(text="photosynthesis", match_mode=pb.ANSWER_MATCH_MODE_FUZZY))
    # One edit in 14 characters: similarity 0.93 >= the default 0.85.
    assert grading.grade_answer(q, _text("photosynthesys")).outcome == grading.CORRECT
    assert grading.grade_answer(q, _text("photo")).outcome == grading.INCORRECT
    strict = _short(
        pb.AcceptedAnswer(
            text="photosynthesis", match_mode=pb.ANSWER_MATCH_MODE_FUZZY, fuzzy_threshold=0.99
        )
    )
    assert grading.grade_answer(strict, _text("photosynthesys")).outcome == grading.INCORRECT


def test_short_answer_first_of_several_accepted_answers_matches() -> None:
    q = _short(pb.AcceptedAnswer(text="H2O"), pb.AcceptedAnswer(text="water"))
    assert grading.grade_answer(q, _text("Water")).outcome == grading.CORRECT


def test_essay_is_left_for_the_instructor_and_completed_by_manual_grades() -> None:
    quiz = pb.Quiz(
        questions=[
            pb.Question(question_id="e", prompt="p", points=10, essay=pb.EssayQuestion()),
            pb.Question(question_id="t", prompt="p", points=1, true_false=pb.TrueFalseQuestion()),
        ]
    )
    answers = [
        pb.Answer(question_id="e", text="essay"),
        pb.Answer(question_id="t", true_false=False),
    ]
    grade = grading.grade_submission(quiz, answers)
    assert grade.needs_manual
    assert grade.points == 1
    done = grading.apply_manual_grades(
        quiz, grade.results, {"e": pb.ManualGrade(question_id="e", points_awarded=7)}
    )
    assert not done.needs_manual
    assert done.points == 8
    assert done.results[0].outcome == grading.PARTIAL


def test_cheap_and_costly_quizzes() -> None:
    cheap = pb.Quiz(questions=[_mc(pb.PARTIAL_CREDIT_PER_OPTION, True, False)])
    regex = pb.Quiz(
        questions=[_short(pb.AcceptedAnswer(text="a", match_mode=pb.ANSWER_MATCH_MODE_REGEX))]
    )
    fuzzy = pb.Quiz(
        questions=[_short(pb.AcceptedAnswer(text="a", match_mode=pb.ANSWER_MATCH_MODE_FUZZY))]
    )
    big = pb.Quiz(questions=[_numeric(1)] * 51)
    assert grading.is_cheap(cheap)
    assert not grading.is_cheap(regex)
    assert not grading.is_cheap(fuzzy)
    assert not grading.is_cheap(big)


def test_late_penalty_per_started_day_capped() -> None:
    due = datetime(2026, 1, 1, tzinfo=UTC)
    policy = pb.LatePolicy(accept_late=True, penalty_percent_per_day=10, max_penalty_percent=25)
    assert grading.late_penalty_percent(policy, due, due) == 0
    assert grading.late_penalty_percent(policy, due, due + timedelta(minutes=1)) == 10
    assert grading.late_penalty_percent(policy, due, due + timedelta(days=1, seconds=1)) == 20
    assert grading.late_penalty_percent(policy, due, due + timedelta(days=9)) == 25
    assert grading.late_penalty_percent(policy, None, due + timedelta(days=9)) == 0


def test_final_score_applies_penalty_and_passing_score() -> None:
    quiz = pb.Quiz(passing_score_percent=50, questions=[_numeric(1), _numeric(2)])
    grade = grading.grade_submission(quiz, [pb.Answer(question_id="q", number=1)])
    # Both questions share the id "q", so both get the answer 1: one right, one wrong.
    score = grading.final_score(quiz, grade, penalty_percent=10)
    assert (score.score, score.max_score, score.percent, score.passed) == (0.9, 2, 45, False)


def test_the_index_grades_every_answer_as_grade_answer_does() -> None:
    single = pb.Question(
        question_id="s", prompt="p", points=3,
        single_choice=pb.SingleChoiceQuestion(options=_options(False, True, True)),
    )  # fmt: skip
    numeric = pb.Question(
        question_id="n", prompt="p", points=1, numeric=pb.NumericQuestion(correct_value=2)
    )
    essay = pb.Question(question_id="e", prompt="p", points=5, essay=pb.EssayQuestion())
    quiz = pb.Quiz(questions=[single, numeric, essay])
    index = grading.quiz_index(quiz)
    answers: list[pb.Answer | None] = [
        pb.Answer(question_id="s", option_id="o1"),
        pb.Answer(question_id="s", option_id="o2"),
        pb.Answer(question_id="s", option_id="o0"),
        pb.Answer(question_id="s", option_id="nope"),
        pb.Answer(question_id="s", option_id=""),
        pb.Answer(question_id="s", true_false=True),
        None,
    ]
    for answer in answers:
        given = [answer] if answer is not None else []
        graded = grading.grade_submission(quiz, given, index)
        assert graded.results[0] == grading.grade_answer(single, answer), answer
    both = [pb.Answer(question_id="n", number=2), pb.Answer(question_id="e", text="essay")]
    graded = grading.grade_submission(quiz, both, index)
    assert graded.results[1:] == [grading.grade_answer(numeric, both[0]),
                                  grading.grade_answer(essay, both[1])]  # fmt: skip
    assert graded.needs_manual
    assert index.options == {"s": frozenset({"o0", "o1", "o2"})}
    assert index.correct == {"s": frozenset({"o1", "o2"})}


def _single(qid: str, points: float = 2) -> pb.Question:
    return pb.Question(
        question_id=qid,
        prompt="p",
        points=points,
        single_choice=pb.SingleChoiceQuestion(options=_options(False, True, False)),
    )


def test_single_choice_grades_share_results_whose_wire_forms_match_a_fresh_build() -> None:
    quiz = pb.Quiz(questions=[_single("a"), _single("b", 0.5), _single("c")])
    answers = [
        pb.Answer(question_id="a", option_id="o1"),
        pb.Answer(question_id="b", option_id="o0"),
        pb.Answer(question_id="c", option_id="o1"),
    ]
    index = grading.quiz_index(quiz)

    grade = grading.grade_submission(quiz, answers, index)
    again = grading.grade_submission(quiz, answers, index)

    assert [r.outcome for r in grade.results] == [
        pb.QUESTION_OUTCOME_CORRECT,
        pb.QUESTION_OUTCOME_INCORRECT,
        pb.QUESTION_OUTCOME_CORRECT,
    ]
    assert [r.points_awarded for r in grade.results] == [2, 0, 2]
    assert grade.judged is not None and again.judged is not None
    assert all(x is y for x, y in zip(grade.results, again.results, strict=True))
    fresh = [pb.QuestionResult() for _ in grade.results]
    for copy, shared in zip(fresh, grade.results, strict=True):
        copy.CopyFrom(shared)
    assert grade.results_bytes() == pb.Submission(results=fresh).SerializeToString()
    # A one-off grade (no kept index: a worker's job, a regrade) builds no shared results.
    one_off = grading.grade_submission(quiz, answers)
    assert one_off.judged is None and one_off.results == grade.results


def test_a_grade_with_any_other_result_has_no_shared_wire_forms() -> None:
    quiz = pb.Quiz(questions=[_single("a"), _mc(pb.PARTIAL_CREDIT_ALL_OR_NOTHING, True, False)])
    unanswered = [pb.Answer(question_id="q", options=pb.OptionSelection(option_ids=["o0"]))]
    blank = grading.grade_submission(quiz, unanswered)
    assert blank.judged is None
    assert blank.results[0].outcome == pb.QUESTION_OUTCOME_UNANSWERED
    assert blank.results_bytes() == pb.Submission(results=blank.results).SerializeToString()
