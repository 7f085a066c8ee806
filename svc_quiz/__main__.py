import uvloop

from elearn.quiz.v1 import quiz_service_pb2_grpc as grpc_api
from mesh.unimplemented import serve_unimplemented
from svc_quiz.settings import QuizSettings

if __name__ == "__main__":
    uvloop.run(
        serve_unimplemented(
            QuizSettings.load(),
            "elearn.quiz.v1.QuizService",
            grpc_api.QuizServiceServicer,
            grpc_api.add_QuizServiceServicer_to_server,
            "issue #4",
        ),
    )
