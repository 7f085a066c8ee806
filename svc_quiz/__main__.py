"""`python -m svc_quiz`: the QuizService process."""

import uvloop

from svc_quiz.server import serve

if __name__ == "__main__":
    uvloop.run(serve())
