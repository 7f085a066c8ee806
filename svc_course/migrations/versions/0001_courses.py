"""courses, videos, enrollments, video progress, search and the outbox

Revision ID: 0001
Revises:
Create Date: 2026-12-04
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

S = "courses"

# Both are trusted extensions, so the database owner may create them; the launcher's bootstrap
# creates them too, and IF NOT EXISTS keeps this harmless where it already has.
EXTENSIONS = (
    "CREATE EXTENSION IF NOT EXISTS pg_trgm WITH SCHEMA public",
    "CREATE EXTENSION IF NOT EXISTS unaccent WITH SCHEMA public",
)

# Scripts written without spaces (CJK) come out of the parser as one token per run, so a
# search for a word inside a title would miss; their overlapping character pairs are indexed
# too (the usual CJK bigram approach), as words with positions so ranking counts them.
CJK_RUN = r"[\u3040-\u30ff\u3400-\u9fff\uac00-\ud7af\uf900-\ufaff]{2,}"
CJK_BIGRAMS = f"""
CREATE FUNCTION {S}.cjk_bigrams(value text) RETURNS tsvector
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT to_tsvector('simple', coalesce(string_agg(substr(m.run, i, 2), ' '), ''))
    FROM (
        SELECT (regexp_matches(lower(value), '{CJK_RUN}', 'g'))[1] AS run
    ) AS m, generate_series(1, length(m.run) - 1) AS i
$$;
"""

# The search columns are computed in the same statement as the write. 'simple' (no stemming,
# no stop words) because the catalog is multilingual; unaccent makes "cafe" find "Café".
# Every indexed word also lands in search_terms, the vocabulary typo correction searches;
# tsvector_to_array returns lexemes sorted, so concurrent writers lock terms in one order.
SEARCH_TRIGGER = f"""
CREATE FUNCTION {S}.courses_search_refresh() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    NEW.search_document :=
        setweight(to_tsvector('simple', public.unaccent(NEW.title)), 'A')
        || setweight({S}.cjk_bigrams(NEW.title), 'A')
        || setweight(to_tsvector('simple', public.unaccent(array_to_string(NEW.tags, ' '))), 'B')
        || setweight(to_tsvector('simple', public.unaccent(NEW.description)), 'C')
        || setweight({S}.cjk_bigrams(NEW.description), 'C');
    NEW.search_title := lower(public.unaccent(NEW.title));
    INSERT INTO {S}.search_terms (term)
    SELECT t FROM unnest(tsvector_to_array(NEW.search_document)) AS t
    WHERE length(t) BETWEEN 2 AND 40
    ON CONFLICT DO NOTHING;
    RETURN NEW;
END
$$;
CREATE TRIGGER courses_search_refresh
BEFORE INSERT OR UPDATE OF title, description, tags ON {S}.courses
FOR EACH ROW EXECUTE FUNCTION {S}.courses_search_refresh();
"""


def _times() -> list[sa.Column]:  # type: ignore[type-arg]
    return [
        sa.Column(
            "created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        sa.Column(
            "updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
    ]


def upgrade() -> None:
    for statement in EXTENSIONS:
        op.execute(statement)
    _courses()
    _videos()
    _enrollments()
    _video_progress()
    op.create_table(
        "outbox",
        sa.Column("id", sa.BigInteger(), primary_key=True, autoincrement=True),
        sa.Column("event_id", sa.Uuid(), nullable=False, unique=True),
        sa.Column("subject", sa.Text(), nullable=False),
        sa.Column("payload", sa.LargeBinary(), nullable=False),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        schema=S,
    )


def _courses() -> None:
    op.create_table(
        "courses",
        sa.Column("id", sa.Uuid(), server_default=sa.text("gen_random_uuid()"), primary_key=True),
        sa.Column("instructor_id", sa.Uuid(), nullable=False),
        sa.Column("title", sa.Text(), nullable=False),
        sa.Column("description", sa.Text(), nullable=False, server_default=""),
        sa.Column("category", sa.Text(), nullable=False),
        sa.Column(
            "tags", postgresql.ARRAY(sa.Text()), nullable=False, server_default=sa.text("'{}'")
        ),
        sa.Column("level", sa.Text(), nullable=False, server_default="all_levels"),
        sa.Column("language", sa.Text(), nullable=False),
        sa.Column("capacity", sa.Integer(), nullable=False, server_default=sa.text("0")),
        sa.Column("state", sa.Text(), nullable=False, server_default="draft"),
        sa.Column("enrollment_count", sa.Integer(), nullable=False, server_default=sa.text("0")),
        sa.Column("video_count", sa.Integer(), nullable=False, server_default=sa.text("0")),
        sa.Column(
            "total_duration_seconds", sa.Integer(), nullable=False, server_default=sa.text("0")
        ),
        sa.Column(
            "search_document",
            postgresql.TSVECTOR(),
            nullable=False,
            server_default=sa.text("''::tsvector"),
        ),
        sa.Column("search_title", sa.Text(), nullable=False, server_default=""),
        sa.Column("idempotency_key", sa.Text()),
        *_times(),
        sa.Column("published_at", sa.DateTime(timezone=True)),
        sa.CheckConstraint("state IN ('draft', 'published', 'archived')", name="ck_courses_state"),
        sa.CheckConstraint("capacity >= 0", name="ck_courses_capacity"),
        sa.CheckConstraint(
            "capacity = 0 OR enrollment_count <= capacity",
            name="ck_courses_enrollment_capacity",
        ),
        sa.CheckConstraint(
            "enrollment_count >= 0 AND video_count >= 0 AND total_duration_seconds >= 0",
            name="ck_courses_counts",
        ),
        sa.UniqueConstraint("instructor_id", "idempotency_key", name="uq_courses_instructor_key"),
        schema=S,
    )
    op.create_index(
        "ix_courses_instructor",
        "courses",
        ["instructor_id", sa.text("created_at DESC"), sa.text("id DESC")],
        schema=S,
    )
    op.create_index(
        "ix_courses_published_created",
        "courses",
        [sa.text("created_at DESC"), sa.text("id DESC")],
        postgresql_where=sa.text("state = 'published'"),
        schema=S,
    )
    op.create_index(
        "ix_courses_search_document",
        "courses",
        ["search_document"],
        postgresql_using="gin",
        schema=S,
    )
    op.create_index(
        "ix_courses_search_title_trgm",
        "courses",
        ["search_title"],
        postgresql_using="gin",
        postgresql_ops={"search_title": "gin_trgm_ops"},
        schema=S,
    )
    op.create_table("search_terms", sa.Column("term", sa.Text(), primary_key=True), schema=S)
    op.create_index(
        "ix_search_terms_trgm",
        "search_terms",
        ["term"],
        postgresql_using="gist",
        postgresql_ops={"term": "gist_trgm_ops"},
        schema=S,
    )
    op.execute(CJK_BIGRAMS)
    op.execute(SEARCH_TRIGGER)


def _videos() -> None:
    op.create_table(
        "videos",
        sa.Column("id", sa.Uuid(), server_default=sa.text("gen_random_uuid()"), primary_key=True),
        sa.Column(
            "course_id",
            sa.Uuid(),
            sa.ForeignKey(f"{S}.courses.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("title", sa.Text(), nullable=False),
        sa.Column("description", sa.Text(), nullable=False, server_default=""),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("duration_seconds", sa.Integer(), nullable=False, server_default=sa.text("0")),
        sa.Column("state", sa.Text(), nullable=False, server_default="awaiting_upload"),
        sa.Column("idempotency_key", sa.Text()),
        *_times(),
        sa.CheckConstraint("position >= 1", name="ck_videos_position"),
        sa.CheckConstraint("duration_seconds >= 0", name="ck_videos_duration"),
        sa.UniqueConstraint("course_id", "idempotency_key", name="uq_videos_course_key"),
        schema=S,
    )
    op.create_index("ix_videos_course_position", "videos", ["course_id", "position"], schema=S)


def _enrollments() -> None:
    op.create_table(
        "enrollments",
        sa.Column("id", sa.Uuid(), server_default=sa.text("gen_random_uuid()"), primary_key=True),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column(
            "course_id",
            sa.Uuid(),
            sa.ForeignKey(f"{S}.courses.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("state", sa.Text(), nullable=False, server_default="active"),
        sa.Column(
            "progress_percent", postgresql.REAL(), nullable=False, server_default=sa.text("0")
        ),
        sa.Column("completed_at", sa.DateTime(timezone=True)),
        sa.Column(
            "enrolled_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        sa.Column("unenrolled_at", sa.DateTime(timezone=True)),
        sa.Column("idempotency_key", sa.Text()),
        sa.Column(
            "updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        sa.CheckConstraint(
            "state IN ('active', 'completed', 'unenrolled')", name="ck_enrollments_state"
        ),
        sa.UniqueConstraint("user_id", "course_id", name="uq_enrollments_user_course"),
        schema=S,
    )
    op.create_index(
        "ix_enrollments_user_enrolled",
        "enrollments",
        ["user_id", sa.text("enrolled_at DESC"), sa.text("id DESC")],
        schema=S,
    )
    op.create_index(
        "ix_enrollments_course_enrolled",
        "enrollments",
        ["course_id", sa.text("enrolled_at DESC"), sa.text("id DESC")],
        schema=S,
    )
    op.create_index(
        "ix_enrollments_completed",
        "enrollments",
        ["course_id", "completed_at"],
        postgresql_where=sa.text("state = 'completed'"),
        schema=S,
    )
    op.create_index(
        "uq_enrollments_user_key",
        "enrollments",
        ["user_id", "idempotency_key"],
        unique=True,
        postgresql_where=sa.text("idempotency_key IS NOT NULL"),
        schema=S,
    )


def _video_progress() -> None:
    op.create_table(
        "video_progress",
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("video_id", sa.Uuid(), nullable=False),
        sa.Column("course_id", sa.Uuid(), nullable=False),
        sa.Column("position_ms", sa.BigInteger(), nullable=False, server_default=sa.text("0")),
        sa.Column("watched_ms", sa.BigInteger(), nullable=False, server_default=sa.text("0")),
        sa.Column("furthest_ms", sa.BigInteger(), nullable=False, server_default=sa.text("0")),
        sa.Column("client_time", sa.DateTime(timezone=True)),
        sa.Column("completed_at", sa.DateTime(timezone=True)),
        sa.Column(
            "updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        sa.PrimaryKeyConstraint("user_id", "video_id", name="pk_video_progress"),
        schema=S,
    )
    op.create_index("ix_video_progress_video", "video_progress", ["video_id"], schema=S)
    op.create_index(
        "ix_video_progress_user_course", "video_progress", ["user_id", "course_id"], schema=S
    )


def downgrade() -> None:
    for table in ("outbox", "video_progress", "enrollments", "videos", "search_terms", "courses"):
        op.drop_table(table, schema=S)
    op.execute(f"DROP FUNCTION IF EXISTS {S}.courses_search_refresh()")
    op.execute(f"DROP FUNCTION IF EXISTS {S}.cjk_bigrams(text)")
