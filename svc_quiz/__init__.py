"""svc_quiz: QuizService. Its implementation lands with issue #4; until then it starts,
reports SERVING and answers UNIMPLEMENTED, never a fake success."""
