"""submissions carry their per-question outcomes as arrays; the answers table goes

Revision ID: 0003_submission_outcomes
Revises: 0002_stats_entry
Create Date: 2026-12-05
"""

from alembic import op

revision = "0003_submission_outcomes"
down_revision = "0002_stats_entry"
branch_labels = None
depends_on = None

S = "analytics"


def upgrade() -> None:
    # IF NOT EXISTS / IF EXISTS: 0001 creates the tables from the live models, which now hold
    # the arrays and no answers table.
    for column, kind in (("question_ids", "uuid"), ("positions", "int"), ("correct", "boolean")):
        op.execute(
            f"ALTER TABLE {S}.submissions ADD COLUMN IF NOT EXISTS {column} {kind}[]"
            " NOT NULL DEFAULT '{}'"
        )
    # Each submission keeps the outcomes of its current grade, as the join on grade_version
    # in the old question-difficulty read did.
    op.execute(f"""
DO $$
BEGIN
  IF to_regclass('{S}.answers') IS NOT NULL THEN
    UPDATE {S}.submissions s
    SET question_ids = a.question_ids, positions = a.positions, correct = a.correct
    FROM (SELECT submission_id, grade_version,
                 array_agg(question_id ORDER BY position, question_id) AS question_ids,
                 array_agg(position ORDER BY position, question_id) AS positions,
                 array_agg(correct ORDER BY position, question_id) AS correct
          FROM {S}.answers GROUP BY submission_id, grade_version) a
    WHERE s.submission_id = a.submission_id AND s.grade_version = a.grade_version;
  END IF;
END $$""")
    op.execute(f"DROP TABLE IF EXISTS {S}.answers")


def downgrade() -> None:
    op.execute(f"""
CREATE TABLE {S}.answers (
  submission_id uuid NOT NULL, question_id uuid NOT NULL, course_id uuid NOT NULL,
  quiz_id uuid NOT NULL, position int NOT NULL, grade_version int NOT NULL,
  correct boolean NOT NULL, PRIMARY KEY (submission_id, question_id))""")
    op.execute(f"""
INSERT INTO {S}.answers
SELECT s.submission_id, q.question_id, s.course_id, s.quiz_id, q.position, s.grade_version,
       q.correct
FROM {S}.submissions s, unnest(s.question_ids, s.positions, s.correct)
     AS q(question_id, position, correct)
ON CONFLICT DO NOTHING""")
    op.execute(f"CREATE INDEX ix_answers_course ON {S}.answers (course_id, quiz_id)")
    for column in ("question_ids", "positions", "correct"):
        op.execute(f"ALTER TABLE {S}.submissions DROP COLUMN {column}")
