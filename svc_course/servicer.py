"""CourseService over gRPC: validate, authorize, call the domain. Errors are mapped by the
mesh interceptor, so handlers only raise."""

from __future__ import annotations

from collections.abc import AsyncIterator

from grpc.aio import ServicerContext

from elearn.course.v1 import course_service_pb2 as pb
from elearn.course.v1 import course_service_pb2_grpc
from mesh.context import Caller, current_caller
from svc_course import validation as check
from svc_course.catalog import Catalog
from svc_course.enrollment import Enrollments
from svc_course.playback import Playback
from svc_course.progress import Progress
from svc_course.search import Search
from svc_course.transcode_status import TranscodeStatus
from svc_course.uploads import Uploads
from svc_course.videos import Videos


def _caller() -> Caller:
    caller = current_caller.get()
    assert caller is not None, "policy admits signed-in methods only with a caller"
    return caller


class CourseServicer(course_service_pb2_grpc.CourseServiceServicer):
    def __init__(
        self,
        catalog: Catalog,
        videos: Videos,
        search: Search,
        enrollments: Enrollments,
        progress: Progress,
        uploads: Uploads,
        transcoding: TranscodeStatus,
        playback: Playback,
    ) -> None:
        self._catalog = catalog
        self._videos = videos
        self._search = search
        self._enrollments = enrollments
        self._progress = progress
        self._uploads = uploads
        self._transcoding = transcoding
        self._playback = playback

    # Catalog

    async def CreateCourse(
        self, request: pb.CreateCourseRequest, context: ServicerContext
    ) -> pb.CreateCourseResponse:
        values, key = check.create_course(request)
        return pb.CreateCourseResponse(course=await self._catalog.create(_caller(), values, key))

    async def GetCourse(
        self, request: pb.GetCourseRequest, context: ServicerContext
    ) -> pb.GetCourseResponse:
        course_id = check.uuid_of(request.course_id, "course_id")
        return pb.GetCourseResponse(course=await self._catalog.get(current_caller.get(), course_id))

    async def UpdateCourse(
        self, request: pb.UpdateCourseRequest, context: ServicerContext
    ) -> pb.UpdateCourseResponse:
        course_id, values = check.update_course(request)
        course = await self._catalog.update(_caller(), course_id, values)
        return pb.UpdateCourseResponse(course=course)

    async def PublishCourse(
        self, request: pb.PublishCourseRequest, context: ServicerContext
    ) -> pb.PublishCourseResponse:
        course_id = check.uuid_of(request.course_id, "course_id")
        course = await self._catalog.set_state(_caller(), course_id, "published")
        return pb.PublishCourseResponse(course=course)

    async def ArchiveCourse(
        self, request: pb.ArchiveCourseRequest, context: ServicerContext
    ) -> pb.ArchiveCourseResponse:
        course_id = check.uuid_of(request.course_id, "course_id")
        course = await self._catalog.set_state(_caller(), course_id, "archived")
        return pb.ArchiveCourseResponse(course=course)

    async def ListInstructorCourses(
        self, request: pb.ListInstructorCoursesRequest, context: ServicerContext
    ) -> pb.ListInstructorCoursesResponse:
        instructor_id = (
            check.uuid_of(request.instructor_id, "instructor_id") if request.instructor_id else None
        )
        state = check.course_state(request.state)
        size = check.sized(request.page_size, 20, 100)
        courses, token = await self._catalog.list_by_instructor(
            current_caller.get(), instructor_id, state, size, request.page_token
        )
        return pb.ListInstructorCoursesResponse(courses=courses, next_page_token=token)

    async def SearchCourses(
        self, request: pb.SearchCoursesRequest, context: ServicerContext
    ) -> pb.SearchCoursesResponse:
        query, category, level, language = check.search(request)
        size = check.sized(request.page_size, 20, 50)
        results, token = await self._search.search(
            query, category, level, language, size, request.page_token
        )
        return pb.SearchCoursesResponse(results=results, next_page_token=token)

    # Videos

    async def CreateVideo(
        self, request: pb.CreateVideoRequest, context: ServicerContext
    ) -> pb.CreateVideoResponse:
        course_id, values, key = check.create_video(request)
        video = await self._videos.create(_caller(), course_id, values, key)
        return pb.CreateVideoResponse(video=video)

    async def GetVideo(
        self, request: pb.GetVideoRequest, context: ServicerContext
    ) -> pb.GetVideoResponse:
        video_id = check.uuid_of(request.video_id, "video_id")
        return pb.GetVideoResponse(video=await self._videos.get(current_caller.get(), video_id))

    async def UpdateVideo(
        self, request: pb.UpdateVideoRequest, context: ServicerContext
    ) -> pb.UpdateVideoResponse:
        video_id, values = check.update_video(request)
        return pb.UpdateVideoResponse(video=await self._videos.update(_caller(), video_id, values))

    async def ListVideos(
        self, request: pb.ListVideosRequest, context: ServicerContext
    ) -> pb.ListVideosResponse:
        course_id = check.uuid_of(request.course_id, "course_id")
        size = check.sized(request.page_size, 100, 200)
        videos, token = await self._videos.page(
            current_caller.get(), course_id, size, request.page_token
        )
        return pb.ListVideosResponse(videos=videos, next_page_token=token)

    # Enrollment

    async def Enroll(
        self, request: pb.EnrollRequest, context: ServicerContext
    ) -> pb.EnrollResponse:
        course_id = check.uuid_of(request.course_id, "course_id")
        key = check.optional_key(request.idempotency_key)
        enrollment, created = await self._enrollments.enroll(_caller(), course_id, key)
        return pb.EnrollResponse(enrollment=enrollment, created=created)

    async def Unenroll(
        self, request: pb.UnenrollRequest, context: ServicerContext
    ) -> pb.UnenrollResponse:
        course_id = check.uuid_of(request.course_id, "course_id")
        return pb.UnenrollResponse(
            enrollment=await self._enrollments.unenroll(_caller(), course_id)
        )

    async def ListMyEnrollments(
        self, request: pb.ListMyEnrollmentsRequest, context: ServicerContext
    ) -> pb.ListMyEnrollmentsResponse:
        states = check.enrollment_states(request.state)
        size = check.sized(request.page_size, 20, 100)
        items, token = await self._enrollments.list_mine(
            _caller(), states, size, request.page_token
        )
        return pb.ListMyEnrollmentsResponse(enrollments=items, next_page_token=token)

    async def ListCourseEnrollments(
        self, request: pb.ListCourseEnrollmentsRequest, context: ServicerContext
    ) -> pb.ListCourseEnrollmentsResponse:
        course_id = check.uuid_of(request.course_id, "course_id")
        states = check.enrollment_states(request.state)
        size = check.sized(request.page_size, 100, 500)
        items, token = await self._enrollments.list_course(
            _caller(), course_id, states, size, request.page_token
        )
        return pb.ListCourseEnrollmentsResponse(enrollments=items, next_page_token=token)

    async def CheckEnrollment(
        self, request: pb.CheckEnrollmentRequest, context: ServicerContext
    ) -> pb.CheckEnrollmentResponse:
        course_id = check.uuid_of(request.course_id, "course_id")
        user_id = check.uuid_of(request.user_id, "user_id")
        return await self._enrollments.check(_caller(), course_id, user_id)

    # Video progress: write-behind, owned by svc_course.progress.
    async def UpdateVideoProgress(
        self, request: pb.UpdateVideoProgressRequest, context: ServicerContext
    ) -> pb.UpdateVideoProgressResponse:
        return await self._progress.update(request)

    async def GetVideoProgress(
        self, request: pb.GetVideoProgressRequest, context: ServicerContext
    ) -> pb.GetVideoProgressResponse:
        return await self._progress.get(request)

    async def ListVideoProgress(
        self, request: pb.ListVideoProgressRequest, context: ServicerContext
    ) -> pb.ListVideoProgressResponse:
        return await self._progress.list(request)

    # Uploads, transcoding and playback: svc_course.uploads, transcode_status, playback.
    async def StartVideoUpload(
        self, request: pb.StartVideoUploadRequest, context: ServicerContext
    ) -> pb.StartVideoUploadResponse:
        video_id = check.uuid_of(request.video_id, "video_id")
        return await self._uploads.start(_caller(), video_id, request)

    async def GetVideoUpload(
        self, request: pb.GetVideoUploadRequest, context: ServicerContext
    ) -> pb.GetVideoUploadResponse:
        video_id = check.uuid_of(request.video_id, "video_id")
        upload_id = check.uuid_of(request.upload_id, "upload_id")
        return await self._uploads.get(_caller(), video_id, upload_id)

    async def CompleteVideoUpload(
        self, request: pb.CompleteVideoUploadRequest, context: ServicerContext
    ) -> pb.CompleteVideoUploadResponse:
        video_id = check.uuid_of(request.video_id, "video_id")
        upload_id = check.uuid_of(request.upload_id, "upload_id")
        parts = [(p.part_number, p.etag) for p in request.parts]
        video = await self._uploads.complete(_caller(), video_id, upload_id, parts)
        return pb.CompleteVideoUploadResponse(video=video)

    async def AbortVideoUpload(
        self, request: pb.AbortVideoUploadRequest, context: ServicerContext
    ) -> pb.AbortVideoUploadResponse:
        video_id = check.uuid_of(request.video_id, "video_id")
        upload_id = check.uuid_of(request.upload_id, "upload_id")
        video = await self._uploads.abort(_caller(), video_id, upload_id)
        return pb.AbortVideoUploadResponse(video=video)

    async def GetTranscodingStatus(
        self, request: pb.GetTranscodingStatusRequest, context: ServicerContext
    ) -> pb.GetTranscodingStatusResponse:
        video_id = check.uuid_of(request.video_id, "video_id")
        status = await self._transcoding.get(_caller(), video_id)
        return pb.GetTranscodingStatusResponse(status=status)

    async def WatchTranscodingStatus(
        self, request: pb.WatchTranscodingStatusRequest, context: ServicerContext
    ) -> AsyncIterator[pb.WatchTranscodingStatusResponse]:
        video_id = check.uuid_of(request.video_id, "video_id")
        async for status in self._transcoding.watch(_caller(), video_id):
            yield pb.WatchTranscodingStatusResponse(status=status)

    async def GetPlaybackUrl(
        self, request: pb.GetPlaybackUrlRequest, context: ServicerContext
    ) -> pb.GetPlaybackUrlResponse:
        video_id = check.uuid_of(request.video_id, "video_id")
        return await self._playback.url(_caller(), video_id)
