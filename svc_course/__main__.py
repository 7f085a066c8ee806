import uvloop

from elearn.course.v1 import course_service_pb2_grpc as grpc_api
from mesh.unimplemented import serve_unimplemented
from svc_course.settings import CourseSettings

if __name__ == "__main__":
    uvloop.run(
        serve_unimplemented(
            CourseSettings.load(),
            "elearn.course.v1.CourseService",
            grpc_api.CourseServiceServicer,
            grpc_api.add_CourseServiceServicer_to_server,
            "issue #3",
        ),
    )
