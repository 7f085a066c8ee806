"""Who may call which CourseService method. Object checks (only a course's instructor or an
admin changes it; a student checks only their own enrollment) are in the domain modules."""

from mesh.auth import OPTIONAL, SIGNED_IN, Policy, role

_S = "/elearn.course.v1.CourseService/"
_TEACHERS = role("instructor", "admin")

POLICY = Policy(
    {
        # The catalog is browsable without an account; a token, when sent, widens what the
        # caller sees (drafts to their instructor, archived courses to enrolled students).
        _S + "SearchCourses": OPTIONAL,
        _S + "GetCourse": OPTIONAL,
        _S + "ListInstructorCourses": OPTIONAL,
        _S + "GetVideo": OPTIONAL,
        _S + "ListVideos": OPTIONAL,
        _S + "CreateCourse": _TEACHERS,
        _S + "UpdateCourse": _TEACHERS,
        _S + "PublishCourse": _TEACHERS,
        _S + "ArchiveCourse": _TEACHERS,
        _S + "CreateVideo": _TEACHERS,
        _S + "UpdateVideo": _TEACHERS,
        _S + "ListCourseEnrollments": _TEACHERS,
        _S + "Enroll": SIGNED_IN,
        _S + "Unenroll": SIGNED_IN,
        _S + "ListMyEnrollments": SIGNED_IN,
        _S + "CheckEnrollment": SIGNED_IN,
        _S + "UpdateVideoProgress": SIGNED_IN,
        _S + "GetVideoProgress": SIGNED_IN,
        _S + "ListVideoProgress": SIGNED_IN,
        # Video pipeline: the course's instructor or an admin (checked per course); playback
        # also for its enrolled students.
        _S + "StartVideoUpload": _TEACHERS,
        _S + "GetVideoUpload": _TEACHERS,
        _S + "CompleteVideoUpload": _TEACHERS,
        _S + "AbortVideoUpload": _TEACHERS,
        _S + "GetTranscodingStatus": _TEACHERS,
        _S + "WatchTranscodingStatus": _TEACHERS,
        _S + "GetPlaybackUrl": SIGNED_IN,
    }
)
