"""svc_course: CourseService. Its implementation lands with issue #3; until then it starts,
reports SERVING and answers UNIMPLEMENTED, never a fake success."""
