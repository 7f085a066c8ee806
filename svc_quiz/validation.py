"""Request checks: every bad field is named (google.rpc.BadRequest) before any work is done.

The bounds are the contract's. They are chosen so the largest valid quiz and the largest valid
submission pass the transport: all of a quiz's text together is at most 150,000 characters
(600 KB even in 4-byte UTF-8, plus its JSON structure, under the edge's 1 MiB JSON body limit
and the 4 MiB gRPC message limit), and all text answers of a submission at most 100,000.
"""

from __future__ import annotations

import math
import uuid

import re2

from elearn.quiz.v1 import quiz_service_pb2 as pb
from mesh.errors import FieldErrors, InvalidArgument
from svc_quiz import grading

MAX_TITLE = 200
MAX_DESCRIPTION = 10_000
MAX_QUESTIONS = 100
MAX_PROMPT = 5_000
MIN_OPTIONS, MAX_OPTIONS = 2, 20
MAX_OPTION_ID = 64
MAX_OPTION_TEXT = 500
MAX_ACCEPTED = 20
MAX_ACCEPTED_TEXT = 500
MAX_SHORT_ANSWER = 500
MAX_ESSAY = 10_000
MAX_RUBRIC = 5_000
MAX_QUIZ_TEXT = 150_000
MAX_ANSWER_TEXT = 100_000
MAX_FEEDBACK = 10_000
MAX_KEY = 128
MAX_POINTS = 1_000_000.0

UPDATABLE = frozenset(
    {
        "title",
        "description",
        "questions",
        "passing_score_percent",
        "max_attempts",
        "time_limit",
        "due_time",
        "late_policy",
        "shuffle_questions",
        "shuffle_options",
        "results_visibility",
    }
)


def uuid_field(value: str, field: str) -> str:
    try:
        return str(uuid.UUID(value))
    except ValueError:
        raise InvalidArgument(
            f"{field} must be a UUID", violations=[(field, "not a UUID")]
        ) from None


def idempotency_key(value: str, field: str = "idempotency_key") -> str:
    if not 1 <= len(value) <= MAX_KEY:
        raise InvalidArgument(
            f"{field} must be 1 to {MAX_KEY} characters",
            violations=[(field, f"1 to {MAX_KEY} characters")],
        )
    return value


def _finite(x: float) -> bool:
    return math.isfinite(x)


def quiz_settings(quiz: pb.Quiz, errors: FieldErrors, fields: frozenset[str] = UPDATABLE) -> None:
    """The settings of a quiz (not its questions), for the fields being written."""
    if "title" in fields:
        errors.check(1 <= len(quiz.title.strip()) <= MAX_TITLE, "quiz.title", "1 to 200 characters")
    if "description" in fields:
        errors.check(
            len(quiz.description) <= MAX_DESCRIPTION,
            "quiz.description",
            "at most 10,000 characters",
        )
    if "passing_score_percent" in fields:
        errors.check(
            _finite(quiz.passing_score_percent) and 0 <= quiz.passing_score_percent <= 100,
            "quiz.passing_score_percent",
            "0 to 100",
        )
    if "max_attempts" in fields:
        errors.check(quiz.max_attempts >= 0, "quiz.max_attempts", "0 (unlimited) or more")
    if "time_limit" in fields and quiz.HasField("time_limit"):
        seconds = quiz.time_limit.ToTimedelta().total_seconds()
        errors.check(0 < seconds <= 7 * 86_400, "quiz.time_limit", "more than 0, at most 7 days")
    if "late_policy" in fields:
        lp = quiz.late_policy
        for name, value in (
            ("penalty_percent_per_day", lp.penalty_percent_per_day),
            ("max_penalty_percent", lp.max_penalty_percent),
        ):
            errors.check(
                _finite(value) and 0 <= value <= 100, f"quiz.late_policy.{name}", "0 to 100"
            )
    if "results_visibility" in fields:
        errors.check(
            quiz.results_visibility in pb.ResultsVisibility.values(),
            "quiz.results_visibility",
            "not a ResultsVisibility",
        )


def _text_size(quiz: pb.Quiz) -> int:
    size = len(quiz.title) + len(quiz.description)
    for q in quiz.questions:
        size += len(q.prompt)
        kind = q.WhichOneof("kind")
        if kind in ("single_choice", "multiple_choice"):
            size += sum(len(o.text) + len(o.option_id) for o in getattr(q, kind).options)
        elif kind == "short_answer":
            size += sum(len(a.text) for a in q.short_answer.accepted_answers)
        elif kind == "essay":
            size += len(q.essay.rubric)
    return size


def questions(quiz: pb.Quiz, errors: FieldErrors) -> None:
    """The questions and key; fills in missing question and option ids (in place)."""
    n = len(quiz.questions)
    errors.check(1 <= n <= MAX_QUESTIONS, "quiz.questions", "1 to 100 questions")
    size = _text_size(quiz)
    errors.check(
        size <= MAX_QUIZ_TEXT,
        "quiz",
        f"all text together is {size} characters; at most {MAX_QUIZ_TEXT}",
    )
    seen: set[str] = set()
    for i, q in enumerate(quiz.questions[:MAX_QUESTIONS]):
        path = f"quiz.questions[{i}]"
        if not q.question_id:
            q.question_id = str(uuid.uuid4())
        else:
            try:
                q.question_id = str(uuid.UUID(q.question_id))
            except ValueError:
                errors.add(f"{path}.question_id", "not a UUID")
        errors.check(q.question_id not in seen, f"{path}.question_id", "repeated")
        seen.add(q.question_id)
        errors.check(
            1 <= len(q.prompt.strip()) <= MAX_PROMPT, f"{path}.prompt", "1 to 5,000 characters"
        )
        errors.check(_finite(q.points) and 0 < q.points <= MAX_POINTS, f"{path}.points", "above 0")
        _question_kind(q, path, errors)


def _question_kind(q: pb.Question, path: str, errors: FieldErrors) -> None:
    kind = q.WhichOneof("kind")
    if kind is None:
        errors.add(path, "set exactly one question kind")
    elif kind in ("single_choice", "multiple_choice"):
        _choices(q, kind, f"{path}.{kind}", errors)
    elif kind == "numeric":
        n = q.numeric
        errors.check(_finite(n.correct_value), f"{path}.numeric.correct_value", "finite")
        for name in ("absolute_tolerance", "relative_tolerance"):
            value = getattr(n, name)
            errors.check(_finite(value) and value >= 0, f"{path}.numeric.{name}", "0 or more")
    elif kind == "short_answer":
        _short_answer(q.short_answer, f"{path}.short_answer", errors)
    elif kind == "essay":
        e = q.essay
        errors.check(0 <= e.max_length <= MAX_ESSAY, f"{path}.essay.max_length", "0 to 10,000")
        errors.check(
            len(e.rubric) <= MAX_RUBRIC, f"{path}.essay.rubric", "at most 5,000 characters"
        )


def _choices(q: pb.Question, kind: str, path: str, errors: FieldErrors) -> None:
    body = getattr(q, kind)
    options = body.options
    errors.check(MIN_OPTIONS <= len(options) <= MAX_OPTIONS, f"{path}.options", "2 to 20 options")
    ids: set[str] = set()
    for j, o in enumerate(options):
        if not o.option_id:
            o.option_id = uuid.uuid4().hex[:12]
        errors.check(
            len(o.option_id) <= MAX_OPTION_ID and o.option_id not in ids,
            f"{path}.options[{j}].option_id",
            "unique, at most 64 characters",
        )
        ids.add(o.option_id)
        errors.check(
            1 <= len(o.text.strip()) <= MAX_OPTION_TEXT,
            f"{path}.options[{j}].text",
            "1 to 500 characters",
        )
    correct = sum(1 for o in options if o.correct)
    if kind == "single_choice":
        errors.check(correct == 1, f"{path}.options", "exactly one option must be correct")
    else:
        errors.check(correct >= 1, f"{path}.options", "at least one option must be correct")
        errors.check(
            0 <= body.max_selections <= len(options),
            f"{path}.max_selections",
            "0 (any) to the number of options",
        )
        errors.check(
            body.partial_credit in pb.PartialCredit.values(),
            f"{path}.partial_credit",
            "not a PartialCredit",
        )


def _short_answer(s: pb.ShortAnswerQuestion, path: str, errors: FieldErrors) -> None:
    errors.check(
        1 <= len(s.accepted_answers) <= MAX_ACCEPTED, f"{path}.accepted_answers", "1 to 20 answers"
    )
    errors.check(0 <= s.max_length <= MAX_SHORT_ANSWER, f"{path}.max_length", "0 to 500")
    for j, a in enumerate(s.accepted_answers):
        apath = f"{path}.accepted_answers[{j}]"
        errors.check(1 <= len(a.text) <= MAX_ACCEPTED_TEXT, f"{apath}.text", "1 to 500 characters")
        errors.check(a.match_mode in pb.AnswerMatchMode.values(), f"{apath}.match_mode", "unknown")
        if a.match_mode == pb.ANSWER_MATCH_MODE_REGEX and a.text:
            try:
                grading.compile_pattern(a.text)
            except re2.error as exc:
                errors.add(f"{apath}.text", f"not an RE2 pattern: {exc}")
        if a.match_mode == pb.ANSWER_MATCH_MODE_FUZZY:
            errors.check(
                _finite(a.fuzzy_threshold) and 0 <= a.fuzzy_threshold <= 1,
                f"{apath}.fuzzy_threshold",
                "above 0 up to 1 (0 means 0.85)",
            )


def new_quiz(quiz: pb.Quiz) -> None:
    errors = FieldErrors()
    quiz_settings(quiz, errors)
    questions(quiz, errors)
    errors.raise_if_any()


def answers(
    quiz: pb.Quiz,
    given: list[pb.Answer],
    field: str = "answers",
    index: grading.QuizIndex | None = None,
) -> None:
    """Answers against the quiz they answer: known question, the right field for its type,
    known options, no repeats, within the length bounds. `index` is the quiz's, when the
    caller keeps one."""
    errors = FieldErrors()
    ix = index or grading.quiz_index(quiz)
    by_id = ix.by_id
    seen: set[str] = set()
    text_total = 0
    if len(given) > len(by_id):
        errors.add(field, f"at most {len(by_id)} answers (one per question)")
        errors.raise_if_any()
    for i, a in enumerate(given):
        path = f"{field}[{i}]"
        q = by_id.get(a.question_id)
        if q is None:
            errors.add(f"{path}.question_id", "no such question in this quiz")
            continue
        if a.question_id in seen:
            errors.add(f"{path}.question_id", "answered twice")
        seen.add(a.question_id)
        response = a.WhichOneof("response")
        if response is None:
            continue
        kind = ix.kinds[a.question_id]
        expected = _EXPECTED[kind]
        if response != expected:
            errors.add(
                f"{path}.{response}", f"the question is {kind or None}; answer with {expected}"
            )
            continue
        if response == "option_id":
            ids = ix.options[a.question_id]
            errors.check(a.option_id in ids, f"{path}.option_id", "no such option")
        elif response == "options":
            _selection(q.multiple_choice, a.options, f"{path}.options.option_ids", errors)
        elif response == "number":
            errors.check(_finite(a.number), f"{path}.number", "finite")
        elif response == "text":
            limit = _text_limit(q)
            text_total += len(a.text)
            errors.check(len(a.text) <= limit, f"{path}.text", f"at most {limit} characters")
    errors.check(
        text_total <= MAX_ANSWER_TEXT, field, f"text answers together at most {MAX_ANSWER_TEXT}"
    )
    errors.raise_if_any()


_EXPECTED = {
    "single_choice": "option_id",
    "multiple_choice": "options",
    "true_false": "true_false",
    "numeric": "number",
    "short_answer": "text",
    "essay": "text",
    "": "nothing",
}


def _selection(
    q: pb.MultipleChoiceQuestion, picked: pb.OptionSelection, path: str, errors: FieldErrors
) -> None:
    ids = {o.option_id for o in q.options}
    chosen = list(picked.option_ids)
    errors.check(len(set(chosen)) == len(chosen), path, "repeated option")
    errors.check(all(c in ids for c in chosen), path, "no such option")
    limit = q.max_selections or len(q.options)
    errors.check(len(chosen) <= limit, path, f"too many choices: at most {limit}")


def _text_limit(q: pb.Question) -> int:
    if q.WhichOneof("kind") == "essay":
        return q.essay.max_length or MAX_ESSAY
    return q.short_answer.max_length or MAX_SHORT_ANSWER


def manual_grades(quiz: pb.Quiz, grades: list[pb.ManualGrade]) -> None:
    errors = FieldErrors()
    by_id = {q.question_id: q for q in quiz.questions}
    seen: set[str] = set()
    errors.check(len(grades) >= 1, "grades", "at least one grade")
    for i, g in enumerate(grades):
        path = f"grades[{i}]"
        q = by_id.get(g.question_id)
        if q is None or q.WhichOneof("kind") != "essay":
            errors.add(f"{path}.question_id", "not an essay question of this quiz")
            continue
        errors.check(g.question_id not in seen, f"{path}.question_id", "graded twice")
        seen.add(g.question_id)
        errors.check(
            _finite(g.points_awarded) and 0 <= g.points_awarded <= q.points,
            f"{path}.points_awarded",
            f"0 to {q.points:g}",
        )
        errors.check(
            len(g.feedback) <= MAX_FEEDBACK, f"{path}.feedback", "at most 10,000 characters"
        )
    errors.raise_if_any()
