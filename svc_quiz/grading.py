"""Pure grading: one answer against one question's key, a whole submission against a quiz,
and the late penalty. No I/O, so SubmitQuiz (cheap quizzes) and the workers (costly ones)
grade with exactly the same code, and unit tests cover every rule.

REGEX answers run on RE2, never Python's `re`: RE2 matches in time linear in the input, so an
instructor's pattern cannot stall a grader with catastrophic backtracking.
"""

from __future__ import annotations

import functools
import math
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import TypeAlias

import re2
from rapidfuzz.distance import Levenshtein

from elearn.events.v1 import quiz_events_pb2 as events_pb
from elearn.quiz.v1 import quiz_service_pb2 as pb

DEFAULT_FUZZY_THRESHOLD = 0.85
# RE2's memory budget per compiled pattern: a 500-character pattern fits easily; a pattern
# whose automaton would grow beyond it fails to compile (refused at authoring) instead.
RE2_MAX_MEM = 8 << 20
# Above this many questions a quiz is graded by a worker even when every question is cheap.
DEFAULT_SYNC_MAX_QUESTIONS = 50

Outcome: TypeAlias = pb.QuestionOutcome.ValueType
CORRECT = pb.QUESTION_OUTCOME_CORRECT
PARTIAL = pb.QUESTION_OUTCOME_PARTIALLY_CORRECT
INCORRECT = pb.QUESTION_OUTCOME_INCORRECT
UNANSWERED = pb.QUESTION_OUTCOME_UNANSWERED
UNJUDGED = pb.QUESTION_OUTCOME_UNSPECIFIED

_CHEAP_MODES = (
    pb.ANSWER_MATCH_MODE_UNSPECIFIED,
    pb.ANSWER_MATCH_MODE_EXACT,
    pb.ANSWER_MATCH_MODE_NORMALIZED,
)


def normalize(text: str) -> str:
    """NFKC, case folding, trimming and collapsing inner whitespace (the contract's NORMALIZED)."""
    return " ".join(unicodedata.normalize("NFKC", text).casefold().split())


@functools.lru_cache(maxsize=4096)
def compile_pattern(pattern: str) -> re2._Regexp:
    """A compiled RE2 pattern (cached: a quiz's patterns are reused for every submission).
    Raises re2.error for a pattern RE2 does not accept."""
    options = re2.Options()
    options.max_mem = RE2_MAX_MEM
    return re2.compile(pattern, options)


_TYPES = {
    "single_choice": pb.QUESTION_TYPE_SINGLE_CHOICE,
    "multiple_choice": pb.QUESTION_TYPE_MULTIPLE_CHOICE,
    "true_false": pb.QUESTION_TYPE_TRUE_FALSE,
    "numeric": pb.QUESTION_TYPE_NUMERIC,
    "short_answer": pb.QUESTION_TYPE_SHORT_ANSWER,
    "essay": pb.QUESTION_TYPE_ESSAY,
}


def question_type(question: pb.Question) -> pb.QuestionType.ValueType:
    return _TYPES.get(question.WhichOneof("kind") or "", pb.QUESTION_TYPE_UNSPECIFIED)


def is_cheap(quiz: pb.Quiz, sync_max_questions: int = DEFAULT_SYNC_MAX_QUESTIONS) -> bool:
    """True when SubmitQuiz may grade the quiz inline: few enough questions and no fuzzy or
    regex short answers (essays wait for the instructor either way)."""
    if len(quiz.questions) > sync_max_questions:
        return False
    for q in quiz.questions:
        if q.WhichOneof("kind") == "short_answer" and any(
            a.match_mode not in _CHEAP_MODES for a in q.short_answer.accepted_answers
        ):
            return False
    return True


def has_essays(quiz: pb.Quiz) -> bool:
    return any(q.WhichOneof("kind") == "essay" for q in quiz.questions)


def _judge(points: float, possible: float) -> Outcome:
    if points >= possible:
        return CORRECT
    if points <= 0:
        return INCORRECT
    return PARTIAL


def grade_single_choice(q: pb.SingleChoiceQuestion, option_id: str) -> float:
    """Share of the points (0 or 1)."""
    return 1.0 if any(o.option_id == option_id and o.correct for o in q.options) else 0.0


def grade_multiple_choice(q: pb.MultipleChoiceQuestion, picked_ids: Iterable[str]) -> float:
    """Share of the points, by the question's partial-credit rule."""
    picked = set(picked_ids)
    correct = {o.option_id for o in q.options if o.correct}
    if q.partial_credit == pb.PARTIAL_CREDIT_RIGHT_MINUS_WRONG:
        right = len(picked & correct)
        wrong = len(picked - correct)
        return max(0.0, (right - wrong) / len(correct)) if correct else 0.0
    if q.partial_credit == pb.PARTIAL_CREDIT_PER_OPTION:
        judged_right = sum(1 for o in q.options if (o.option_id in picked) == o.correct)
        return judged_right / len(q.options) if q.options else 0.0
    return 1.0 if picked == correct else 0.0


def grade_numeric(q: pb.NumericQuestion, value: float) -> float:
    if not math.isfinite(value):
        return 0.0
    distance = abs(value - q.correct_value)
    if distance <= q.absolute_tolerance:
        return 1.0
    if q.relative_tolerance > 0 and distance <= q.relative_tolerance * abs(q.correct_value):
        return 1.0
    return 0.0


def matches(accepted: pb.AcceptedAnswer, text: str) -> bool:
    """Whether a short answer matches one accepted answer under its match mode."""
    mode = accepted.match_mode
    if mode == pb.ANSWER_MATCH_MODE_EXACT:
        return text == accepted.text
    if mode == pb.ANSWER_MATCH_MODE_REGEX:
        return compile_pattern(accepted.text).fullmatch(normalize(text)) is not None
    if mode == pb.ANSWER_MATCH_MODE_FUZZY:
        threshold = accepted.fuzzy_threshold or DEFAULT_FUZZY_THRESHOLD
        a, b = normalize(text), normalize(accepted.text)
        # normalized_similarity is 1 - distance / max(len): the contract's definition.
        return bool(Levenshtein.normalized_similarity(a, b) >= threshold)
    return normalize(text) == normalize(accepted.text)


def grade_short_answer(q: pb.ShortAnswerQuestion, text: str) -> float:
    return 1.0 if any(matches(a, text) for a in q.accepted_answers) else 0.0


def grade_answer(question: pb.Question, answer: pb.Answer | None) -> pb.QuestionResult:
    """The result of one answer. Essays come back unjudged (the instructor grades them); an
    answer in the wrong field scores zero (validation refuses it before it gets here)."""
    result = pb.QuestionResult(question_id=question.question_id, points_possible=question.points)
    kind = question.WhichOneof("kind")
    given = answer.WhichOneof("response") if answer is not None else None
    if given is None:
        result.outcome = UNANSWERED
        return result
    assert answer is not None
    if kind == "essay":
        result.outcome = UNJUDGED
        return result
    share = 0.0
    if kind == "single_choice" and given == "option_id":
        share = grade_single_choice(question.single_choice, answer.option_id)
    elif kind == "multiple_choice" and given == "options":
        share = grade_multiple_choice(question.multiple_choice, answer.options.option_ids)
    elif kind == "true_false" and given == "true_false":
        share = 1.0 if answer.true_false == question.true_false.correct_answer else 0.0
    elif kind == "numeric" and given == "number":
        share = grade_numeric(question.numeric, answer.number)
    elif kind == "short_answer" and given == "text":
        share = grade_short_answer(question.short_answer, answer.text)
    result.points_awarded = round(share * question.points, 6)
    result.outcome = _judge(result.points_awarded, question.points)
    return result


@dataclass(frozen=True, slots=True)
class Judged:
    """A single-choice question's result when answered right, or wrong: built once per kept
    quiz index and shared by every submission with that outcome (never mutated; a repeated
    field copies what it is given), with its two wire forms serialized already: as an entry
    of Submission.results and of SubmissionGraded.questions. An exam rush grades thousands of
    submissions of one quiz, and building 20 results and both wire forms for each submission
    cost about 80 µs of SubmitQuiz's CPU."""

    result: pb.QuestionResult
    in_submission: bytes  # Submission(results=[result]), serialized
    in_event: bytes  # SubmissionGraded(questions=[its QuestionGrade]), serialized


@dataclass(frozen=True)
class Grade:
    """A submission's grade: per-question results in authoring order, and whether essays
    still wait for the instructor. `judged` is set when every result is a shared Judged one."""

    results: list[pb.QuestionResult]
    needs_manual: bool
    judged: list[Judged] | None = None

    @property
    def points(self) -> float:
        return sum(r.points_awarded for r in self.results)

    def results_bytes(self) -> bytes:
        """A Submission holding only the results, serialized (the stored form)."""
        if self.judged is not None:
            return b"".join(j.in_submission for j in self.judged)
        return pb.Submission(results=self.results).SerializeToString()


@dataclass(frozen=True, slots=True)
class QuizIndex:
    """A quiz's questions in lookup form, built once per definition: an exam rush validates
    and grades thousands of submissions against one quiz, and walking its protobuf questions
    and options for each was most of the grading CPU."""

    # (question, question_id, kind, points) in authoring order.
    questions: tuple[tuple[pb.Question, str, str, float], ...]
    by_id: dict[str, pb.Question]
    kinds: dict[str, str]
    # Choice questions: their option ids; single-choice questions: the right ones.
    options: dict[str, frozenset[str]]
    correct: dict[str, frozenset[str]]
    # Single-choice results by (question id, answered right), built on first use: a kept
    # index serves every later submission, and a one-off grade builds none of them.
    judged: dict[tuple[str, bool], Judged]


def quiz_index(quiz: pb.Quiz) -> QuizIndex:
    questions = []
    options: dict[str, frozenset[str]] = {}
    correct: dict[str, frozenset[str]] = {}
    for q in quiz.questions:
        kind = q.WhichOneof("kind") or ""
        questions.append((q, q.question_id, kind, q.points))
        if kind in ("single_choice", "multiple_choice"):
            choices = getattr(q, kind).options
            options[q.question_id] = frozenset(o.option_id for o in choices)
            if kind == "single_choice":
                correct[q.question_id] = frozenset(o.option_id for o in choices if o.correct)
    return QuizIndex(
        questions=tuple(questions),
        by_id={q.question_id: q for q, *_ in questions},
        kinds={qid: kind for _, qid, kind, _ in questions},
        options=options,
        correct=correct,
        judged={},
    )


def _judged(q: pb.Question, right: bool) -> Judged:
    # grade_single_choice's share: all or nothing.
    awarded = round((1.0 if right else 0.0) * q.points, 6)
    result = pb.QuestionResult(
        question_id=q.question_id,
        points_possible=q.points,
        points_awarded=awarded,
        outcome=_judge(awarded, q.points),
    )
    graded = events_pb.QuestionGrade(
        question_id=q.question_id,
        type=question_type(q),
        outcome=result.outcome,
        points_awarded=awarded,
        points_possible=q.points,
    )
    return Judged(
        result,
        pb.Submission(results=[result]).SerializeToString(),
        events_pb.SubmissionGraded(questions=[graded]).SerializeToString(),
    )


def grade_submission(
    quiz: pb.Quiz, answers: Iterable[pb.Answer], index: QuizIndex | None = None
) -> Grade:
    """Every question's result; `index` is the quiz's, when the caller keeps one (then
    single-choice results are the index's shared Judged ones)."""
    ix = index or quiz_index(quiz)
    by_question = {a.question_id: a for a in answers}
    results = []
    judged: list[Judged] | None = [] if index is not None else None
    for q, qid, kind, _ in ix.questions:
        answer = by_question.get(qid)
        if (
            judged is not None
            and kind == "single_choice"
            and answer is not None
            and answer.option_id
        ):
            # grade_single_choice through the index (an option_id is set only when that is
            # the answer's response).
            key = (qid, answer.option_id in ix.correct[qid])
            shared = ix.judged.get(key)
            if shared is None:
                shared = ix.judged[key] = _judged(q, key[1])
            result = shared.result
            judged.append(shared)
        else:
            result = grade_answer(q, answer)
            judged = None
        results.append(result)
    needs_manual = any(
        kind == "essay" and r.outcome == UNJUDGED
        for (_, _, kind, _), r in zip(ix.questions, results, strict=True)
    )
    return Grade(results, needs_manual, judged)


def apply_manual_grades(
    quiz: pb.Quiz, results: list[pb.QuestionResult], grades: Mapping[str, pb.ManualGrade]
) -> Grade:
    """Essay grades merged into automatic results; a new grade for an essay replaces the old."""
    merged = []
    for q, r in zip(quiz.questions, results, strict=True):
        g = grades.get(q.question_id)
        if g is not None and q.WhichOneof("kind") == "essay":
            r = pb.QuestionResult(
                question_id=q.question_id,
                points_possible=q.points,
                points_awarded=g.points_awarded,
                outcome=_judge(g.points_awarded, q.points),
                feedback=g.feedback,
            )
        merged.append(r)
    needs_manual = any(
        q.WhichOneof("kind") == "essay" and r.outcome == UNJUDGED
        for q, r in zip(quiz.questions, merged, strict=True)
    )
    return Grade(merged, needs_manual)


def late_penalty_percent(policy: pb.LatePolicy, due: datetime | None, submitted: datetime) -> float:
    """Percent deducted: per started day after the due time, capped (0 cap means 100)."""
    if due is None or submitted <= due:
        return 0.0
    days = math.ceil((submitted - due).total_seconds() / 86_400)
    cap = policy.max_penalty_percent or 100.0
    return min(cap, days * policy.penalty_percent_per_day, 100.0)


@dataclass(frozen=True)
class Score:
    score: float
    max_score: float
    percent: float
    passed: bool


def final_score(quiz: pb.Quiz, grade: Grade, penalty_percent: float) -> Score:
    max_score = sum(q.points for q in quiz.questions)
    score = round(grade.points * (1 - penalty_percent / 100), 6)
    percent = round(100 * score / max_score, 6) if max_score else 0.0
    return Score(score, max_score, percent, percent >= quiz.passing_score_percent)
