"""The SQL of the group commit (svc_quiz.group_commit): the one statement that writes a batch,
and the transaction it falls back on.

The one statement opens each attempt already SUBMITTED (it closes at once anyway, and writing
the final row spares an UPDATE that would rewrite every index of attempts), numbered after the
student's earlier ones and within the quiz's limit, inserts its submission with that number and
its outbox row, whose SubmissionGraded payload is joined around the number in SQL
(grades.EventHalves). Being one statement, it runs on an autocommit connection: atomic on its
own, one round trip and no BEGIN/COMMIT statements. Data-modifying CTEs share one snapshot, so
every part reads its number from `c`. The submission goes first: a key that loses at ON
CONFLICT DO NOTHING (a repeat, in this batch or an earlier one) takes neither attempt nor event.
An attempt number taken by a concurrent writer (or twice by one student in this batch) aborts
the statement with a unique violation, and the batch goes again through the transaction
(`INSERT_BATCH` below), which skips such rows and deletes the attempts whose keys lost.
The open-attempt check stands in for uq_attempts_open, which a row never IN_PROGRESS does not
enter: a one-call submission is refused while the student has an attempt open.
"""

from __future__ import annotations

from sqlalchemy import text

from svc_quiz import submission_repository as srepo
from svc_quiz.grades import ATTEMPT_NUMBER_KEY
from svc_quiz.repository import IN_PROGRESS, SUBMITTED

ATTEMPT_ARRAYS = {
    "start_key": "text",
    "shuffle_seed": "int",
    "started_at": "timestamptz",
    "max_attempts": "int",
}
# The outbox row of each submission: event_tail NULL means event_head is the whole payload
# (a grading job), else the payload is head + attempt_number + tail; event_id NULL: no event.
EVENT_ARRAYS = {
    "event_id": "uuid",
    "event_subject": "text",
    "event_head": "bytea",
    "event_tail": "bytea",
    "event_traceparent": "text",
}
SUBMISSION_INPUT = {k: t for k, t in srepo.SUBMISSION_ARRAYS.items() if k != "attempt_number"}
STATEMENT_INPUT = {**SUBMISSION_INPUT, **ATTEMPT_ARRAYS, **EVENT_ARRAYS}


def varint_sql(n: str) -> str:
    """SQL for protobuf's varint of the positive int4 expression `n` (grades.varint): five
    7-bit groups, low first, the high bit on every byte but the last, cut to its length."""
    out = "'\\x0000000000'::bytea"
    for k in range(5):
        more = f" | CASE WHEN {n} >= {1 << 7 * (k + 1)} THEN 128 ELSE 0 END" if k < 4 else ""
        out = f"set_byte({out}, {k}, (({n} >> {7 * k}) & 127){more})"
    length = " ".join(f"WHEN {n} < {1 << 7 * k} THEN {k}" for k in range(1, 5))
    return f"substring({out} FROM 1 FOR CASE {length} ELSE 5 END)"


# Postgres plans a prepared statement anew for each execution (a custom plan) as long as that
# looks cheaper than its generic plan, and for unnest(array parameters) it always does: the
# generic plan assumes 100 rows, a custom one the arrays' real length. Planning this statement
# cost about as much server CPU as running it for a few rows, so the group commit asks for the
# generic plan around it, and back (a session setting, on a pooled connection).
GENERIC_PLAN = "SET plan_cache_mode = force_generic_plan"
DEFAULT_PLAN = "RESET plan_cache_mode"

_KEY = "'\\x" + ATTEMPT_NUMBER_KEY.hex() + "'::bytea"
_ARRAYS = ", ".join(f"%({c})b::{t}[]" for c, t in STATEMENT_INPUT.items())
_SUBMISSION_VALUES = ", ".join(
    "c.number" if c == "attempt_number" else f"c.{c}" for c in srepo.SUBMISSION_ARRAYS
)


def _numbered(alias: str) -> str:
    """Each input row `i` with `alias`.n, the student's earlier attempts at the quiz (their
    highest number, read from the top of uq_attempts_number: numbers run 1..n, and counting
    them read every earlier attempt for each submission), kept only within the quiz's attempt
    limit and while the student has no attempt open (the check that stands in for
    uq_attempts_open, which a row never IN_PROGRESS does not enter)."""
    return f"""FROM i CROSS JOIN LATERAL (
        SELECT coalesce(max(o.attempt_number), 0) AS n
        FROM attempts o WHERE o.quiz_id = i.quiz_id AND o.user_id = i.user_id
      ) {alias}
      WHERE (i.max_attempts = 0 OR {alias}.n < i.max_attempts)
        AND NOT EXISTS (
          SELECT 1 FROM attempts o
          WHERE o.quiz_id = i.quiz_id AND o.user_id = i.user_id AND o.state = {IN_PROGRESS}
        )"""


# psycopg's own placeholders (%(name)b: binary arrays, no text parsing on either side).
ONE_STATEMENT = f"""
    WITH i AS (
      SELECT * FROM unnest({_ARRAYS}) AS i({", ".join(STATEMENT_INPUT)})
    ), c AS (
      SELECT i.*, (n.n + 1)::int AS number
      {_numbered("n")}
    ), s AS (
      INSERT INTO submissions ({srepo.SUBMISSION_COLUMNS_NEW})
      SELECT {_SUBMISSION_VALUES} FROM c
      ON CONFLICT DO NOTHING
      RETURNING id, attempt_number
    ), a AS (
      INSERT INTO attempts (id, quiz_id, user_id, attempt_number, quiz_version, state,
                            start_key, shuffle_seed, started_at, deadline_at, submission_id)
      SELECT c.attempt_id, c.quiz_id, c.user_id, c.number, c.quiz_version, {SUBMITTED},
             c.start_key, c.shuffle_seed, c.started_at, NULL, c.id
      FROM c JOIN s ON s.id = c.id
    ), o AS (
      INSERT INTO outbox (event_id, subject, payload, traceparent)
      SELECT c.event_id, c.event_subject,
             c.event_head || coalesce({_KEY} || {varint_sql("c.number")} || c.event_tail, ''),
             c.event_traceparent
      FROM c JOIN s ON s.id = c.id
      WHERE c.event_id IS NOT NULL
    )
    SELECT id, attempt_number FROM s
"""

_INPUT = {**srepo.SUBMISSION_ARRAYS, **ATTEMPT_ARRAYS}
_INPUT_COLUMNS = ", ".join(_INPUT)
_INPUT_ARRAYS = ", ".join(f"CAST(:{c} AS {t}[])" for c, t in _INPUT.items())
_BATCH_SUBMISSION_VALUES = ", ".join(
    "a.attempt_number" if c == "attempt_number" else f"i.{c}" for c in srepo.SUBMISSION_ARRAYS
)

# The fallback, in a transaction: attempts that meet a taken number are skipped (ON CONFLICT
# DO NOTHING on attempts) and their submissions with them; the outbox rows follow separately.
INSERT_BATCH = text(
    f"""
    WITH i AS (
      SELECT * FROM unnest({_INPUT_ARRAYS}) AS i({_INPUT_COLUMNS})
    ), a AS (
      INSERT INTO attempts (id, quiz_id, user_id, attempt_number, quiz_version, state,
                            start_key, shuffle_seed, started_at, deadline_at, submission_id)
      SELECT i.attempt_id, i.quiz_id, i.user_id, c.n + 1, i.quiz_version, {SUBMITTED},
             i.start_key, i.shuffle_seed, i.started_at, NULL, i.id
      {_numbered("c")}
      ON CONFLICT DO NOTHING
      RETURNING id, attempt_number
    ), s AS (
      INSERT INTO submissions ({srepo.SUBMISSION_COLUMNS_NEW})
      SELECT {_BATCH_SUBMISSION_VALUES} FROM i JOIN a ON a.id = i.attempt_id
      ON CONFLICT DO NOTHING
      RETURNING id
    )
    SELECT a.id, a.attempt_number, s.id IS NOT NULL AS written
    FROM a JOIN i ON i.attempt_id = a.id LEFT JOIN s ON s.id = i.id
    """
)

# An attempt whose submission lost to an earlier key goes again: a lone transaction would
# have rolled it back.
DROP_ATTEMPTS = text("DELETE FROM attempts WHERE id = ANY(CAST(:ids AS uuid[]))")
