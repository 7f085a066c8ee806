"""QuizService over gRPC: validate, authorize, call the domain. Errors are mapped by the
mesh interceptor, so handlers only raise."""

from __future__ import annotations

from collections.abc import AsyncIterator

from grpc.aio import ServicerContext

from elearn.quiz.v1 import quiz_service_pb2 as pb
from elearn.quiz.v1 import quiz_service_pb2_grpc
from mesh.context import Caller, current_caller
from mesh.pagination import page_size
from svc_quiz import validation as check
from svc_quiz import views
from svc_quiz.attempts import Attempts
from svc_quiz.authoring import Authoring
from svc_quiz.submissions import Submissions


def _caller() -> Caller:
    caller = current_caller.get()
    assert caller is not None, "policy admits signed-in callers only"
    return caller


class QuizServicer(quiz_service_pb2_grpc.QuizServiceServicer):
    def __init__(self, authoring: Authoring, attempts: Attempts, submissions: Submissions) -> None:
        self._authoring = authoring
        self._attempts = attempts
        self._submissions = submissions

    async def CreateQuiz(
        self, request: pb.CreateQuizRequest, context: ServicerContext
    ) -> pb.CreateQuizResponse:
        key = check.idempotency_key(request.idempotency_key)
        quiz = pb.Quiz()
        quiz.CopyFrom(request.quiz)
        return pb.CreateQuizResponse(quiz=await self._authoring.create(_caller(), quiz, key))

    async def GetQuiz(
        self, request: pb.GetQuizRequest, context: ServicerContext
    ) -> pb.GetQuizResponse:
        quiz_id = check.uuid_field(request.quiz_id, "quiz_id")
        caller = _caller()
        summary = await self._authoring.overview(caller, quiz_id)
        used, open_id = await self._attempts.used(caller, quiz_id)
        return pb.GetQuizResponse(quiz=summary, attempts_used=used, open_attempt_id=open_id)

    async def GetQuizDefinition(
        self, request: pb.GetQuizDefinitionRequest, context: ServicerContext
    ) -> pb.GetQuizDefinitionResponse:
        quiz_id = check.uuid_field(request.quiz_id, "quiz_id")
        return pb.GetQuizDefinitionResponse(
            quiz=await self._authoring.definition(_caller(), quiz_id)
        )

    async def UpdateQuiz(
        self, request: pb.UpdateQuizRequest, context: ServicerContext
    ) -> pb.UpdateQuizResponse:
        quiz = pb.Quiz()
        quiz.CopyFrom(request.quiz)
        updated, regrade = await self._authoring.update(_caller(), quiz, request.update_mask)
        return pb.UpdateQuizResponse(quiz=updated, regrade_count=regrade)

    async def PublishQuiz(
        self, request: pb.PublishQuizRequest, context: ServicerContext
    ) -> pb.PublishQuizResponse:
        quiz_id = check.uuid_field(request.quiz_id, "quiz_id")
        return pb.PublishQuizResponse(quiz=await self._authoring.publish(_caller(), quiz_id))

    async def ListQuizzes(
        self, request: pb.ListQuizzesRequest, context: ServicerContext
    ) -> pb.ListQuizzesResponse:
        size = page_size(request.page_size)
        quizzes, token = await self._authoring.list(
            _caller(), request.course_id, size, request.page_token
        )
        return pb.ListQuizzesResponse(quizzes=quizzes, next_page_token=token)

    async def StartAttempt(
        self, request: pb.StartAttemptRequest, context: ServicerContext
    ) -> pb.StartAttemptResponse:
        quiz_id = check.uuid_field(request.quiz_id, "quiz_id")
        key = check.idempotency_key(request.idempotency_key)
        row, quiz = await self._attempts.start(_caller(), quiz_id, key)
        return pb.StartAttemptResponse(attempt=views.attempt(row, quiz))

    async def SaveAnswers(
        self, request: pb.SaveAnswersRequest, context: ServicerContext
    ) -> pb.SaveAnswersResponse:
        attempt_id = check.uuid_field(request.attempt_id, "attempt_id")
        return await self._attempts.save(_caller(), attempt_id, list(request.answers))

    async def SubmitQuiz(
        self, request: pb.SubmitQuizRequest, context: ServicerContext
    ) -> pb.SubmitQuizResponse:
        return pb.SubmitQuizResponse(submission=await self._submissions.submit(_caller(), request))

    async def GetSubmission(
        self, request: pb.GetSubmissionRequest, context: ServicerContext
    ) -> pb.GetSubmissionResponse:
        submission = await self._submissions.get(_caller(), request.submission_id)
        return pb.GetSubmissionResponse(submission=submission)

    async def ListMySubmissions(
        self, request: pb.ListMySubmissionsRequest, context: ServicerContext
    ) -> pb.ListMySubmissionsResponse:
        page, token = await self._submissions.list_mine(_caller(), request)
        return pb.ListMySubmissionsResponse(submissions=page, next_page_token=token)

    async def ListQuizSubmissions(
        self, request: pb.ListQuizSubmissionsRequest, context: ServicerContext
    ) -> pb.ListQuizSubmissionsResponse:
        page, token = await self._submissions.list_quiz(_caller(), request)
        return pb.ListQuizSubmissionsResponse(submissions=page, next_page_token=token)

    async def WatchSubmission(
        self, request: pb.WatchSubmissionRequest, context: ServicerContext
    ) -> AsyncIterator[pb.WatchSubmissionResponse]:
        async for submission in self._submissions.watch(_caller(), request.submission_id):
            yield pb.WatchSubmissionResponse(submission=submission)

    async def GradeSubmission(
        self, request: pb.GradeSubmissionRequest, context: ServicerContext
    ) -> pb.GradeSubmissionResponse:
        submission = await self._submissions.grade(_caller(), request)
        return pb.GradeSubmissionResponse(submission=submission)

    async def RetryGrading(
        self, request: pb.RetryGradingRequest, context: ServicerContext
    ) -> pb.RetryGradingResponse:
        submission = await self._submissions.retry(_caller(), request.submission_id)
        return pb.RetryGradingResponse(submission=submission)
