"""svc_quiz settings, read from QUIZ_* variables plus the shared ones (see mesh.config). The
grading worker reads the same class with the QUIZ_WORKER_ prefix (its own ports), so both
agree on the queue's names and limits when the launcher sets them for both."""

from __future__ import annotations

from typing import ClassVar

from pydantic_settings import SettingsConfigDict

from mesh.config import MeshSettings


class QuizSettings(MeshSettings):
    model_config = SettingsConfigDict(env_prefix="QUIZ_", extra="ignore", populate_by_name=True)
    service: ClassVar[str] = "quiz"

    # host:port of CourseService (CheckEnrollment): who teaches a course, who is enrolled.
    course_address: str = ""
    # CheckEnrollment answers are cached in-process this long: an exam start makes one call
    # per student, not one per request; an unenrolment takes at most this long to bite.
    enrollment_cache_seconds: float = 30.0
    # A published quiz read by StartAttempt/SubmitQuiz is reused this long in-process: an
    # exam start reads it once per second, not once per student; edits show this much later.
    quiz_cache_seconds: float = 1.0
    # Submissions arriving this long after an attempt's deadline are still accepted (a
    # request in flight when the clock ran out).
    deadline_grace_seconds: float = 10.0
    # One-call submissions queued while a batch is being written share the next transaction,
    # up to this many (svc_quiz.group_commit): a bound on one transaction's size.
    group_commit_max_batch: int = 500
    # A batch of one-call submissions waits for company until its oldest has waited this
    # long (or it is full), busy writer or not: a few ms of latency against per-batch costs
    # (round trip, statement, relay pass, analytics batch). Back to back, batches carried ~2
    # submissions each at 600/s; with 5 ms 4 (stack CPU per submission -12 %), with 10 ms 7
    # (quiz and Postgres CPU another 3-5 % less).
    group_commit_linger_seconds: float = 0.01
    # The outbox relay waits this long after a commit wakes it, so the events of several
    # group commits go out in one relay pass (mesh.outbox.Outbox.relay); the delay an event
    # gets on its way to analytics.
    outbox_linger_seconds: float = 0.01
    # More questions than this and the quiz is graded by a worker even if all are cheap.
    sync_max_questions: int = 50
    # Exam-start admission: StartAttempt sheds with RESOURCE_EXHAUSTED while more grading
    # jobs than this wait (queued or in flight), telling the client when to come back.
    admission_max_backlog: int = 5000
    admission_retry_seconds: float = 5.0
    # The backlog is read from JetStream at most this often per process.
    backlog_refresh_seconds: float = 1.0
    # Work queue: a job is redelivered when not acked within ack_wait; after max_deliver
    # deliveries it is dead-lettered and the submission becomes FAILED.
    grading_ack_wait_seconds: float = 30.0
    grading_max_deliver: int = 5
    # Jobs a worker holds at once.
    worker_batch: int = 16
    # Open attempts past deadline + grace are submitted with their saved answers this often.
    expiry_sweep_seconds: float = 5.0


class QuizWorkerSettings(QuizSettings):
    model_config = SettingsConfigDict(
        env_prefix="QUIZ_WORKER_", extra="ignore", populate_by_name=True
    )
    service: ClassVar[str] = "quiz-worker"
