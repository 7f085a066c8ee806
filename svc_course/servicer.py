"""CourseService over gRPC: validate, authorize, call the domain. Errors are mapped by the
mesh interceptor, so handlers only raise."""

from __future__ import annotations

from grpc.aio import ServicerContext

from elearn.course.v1 import course_service_pb2 as pb
from elearn.course.v1 import course_service_pb2_grpc
from mesh.errors import Unimplemented
from svc_course.progress import Progress

_VIDEO_ISSUE = "is not implemented yet (the video upload and transcoding issue)"
_CATALOG_SOON = "is not implemented yet (issue #11, catalog)"


class CourseServicer(course_service_pb2_grpc.CourseServiceServicer):
    def __init__(self, progress: Progress) -> None:
        self._progress = progress

    # Catalog, search and enrollment: filled in right after this skeleton.
    async def CreateCourse(
        self, request: pb.CreateCourseRequest, context: ServicerContext
    ) -> pb.CreateCourseResponse:
        raise Unimplemented(f"CreateCourse {_CATALOG_SOON}")

    async def SearchCourses(
        self, request: pb.SearchCoursesRequest, context: ServicerContext
    ) -> pb.SearchCoursesResponse:
        raise Unimplemented(f"SearchCourses {_CATALOG_SOON}")

    async def GetCourse(
        self, request: pb.GetCourseRequest, context: ServicerContext
    ) -> pb.GetCourseResponse:
        raise Unimplemented(f"GetCourse {_CATALOG_SOON}")

    async def UpdateCourse(
        self, request: pb.UpdateCourseRequest, context: ServicerContext
    ) -> pb.UpdateCourseResponse:
        raise Unimplemented(f"UpdateCourse {_CATALOG_SOON}")

    async def PublishCourse(
        self, request: pb.PublishCourseRequest, context: ServicerContext
    ) -> pb.PublishCourseResponse:
        raise Unimplemented(f"PublishCourse {_CATALOG_SOON}")

    async def ArchiveCourse(
        self, request: pb.ArchiveCourseRequest, context: ServicerContext
    ) -> pb.ArchiveCourseResponse:
        raise Unimplemented(f"ArchiveCourse {_CATALOG_SOON}")

    async def ListInstructorCourses(
        self, request: pb.ListInstructorCoursesRequest, context: ServicerContext
    ) -> pb.ListInstructorCoursesResponse:
        raise Unimplemented(f"ListInstructorCourses {_CATALOG_SOON}")

    async def CreateVideo(
        self, request: pb.CreateVideoRequest, context: ServicerContext
    ) -> pb.CreateVideoResponse:
        raise Unimplemented(f"CreateVideo {_CATALOG_SOON}")

    async def GetVideo(
        self, request: pb.GetVideoRequest, context: ServicerContext
    ) -> pb.GetVideoResponse:
        raise Unimplemented(f"GetVideo {_CATALOG_SOON}")

    async def UpdateVideo(
        self, request: pb.UpdateVideoRequest, context: ServicerContext
    ) -> pb.UpdateVideoResponse:
        raise Unimplemented(f"UpdateVideo {_CATALOG_SOON}")

    async def ListVideos(
        self, request: pb.ListVideosRequest, context: ServicerContext
    ) -> pb.ListVideosResponse:
        raise Unimplemented(f"ListVideos {_CATALOG_SOON}")

    async def Enroll(
        self, request: pb.EnrollRequest, context: ServicerContext
    ) -> pb.EnrollResponse:
        raise Unimplemented(f"Enroll {_CATALOG_SOON}")

    async def Unenroll(
        self, request: pb.UnenrollRequest, context: ServicerContext
    ) -> pb.UnenrollResponse:
        raise Unimplemented(f"Unenroll {_CATALOG_SOON}")

    async def ListMyEnrollments(
        self, request: pb.ListMyEnrollmentsRequest, context: ServicerContext
    ) -> pb.ListMyEnrollmentsResponse:
        raise Unimplemented(f"ListMyEnrollments {_CATALOG_SOON}")

    async def ListCourseEnrollments(
        self, request: pb.ListCourseEnrollmentsRequest, context: ServicerContext
    ) -> pb.ListCourseEnrollmentsResponse:
        raise Unimplemented(f"ListCourseEnrollments {_CATALOG_SOON}")

    async def CheckEnrollment(
        self, request: pb.CheckEnrollmentRequest, context: ServicerContext
    ) -> pb.CheckEnrollmentResponse:
        raise Unimplemented(f"CheckEnrollment {_CATALOG_SOON}")

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

    # Uploads, transcoding and playback belong to the video issue.
    async def StartVideoUpload(
        self, request: pb.StartVideoUploadRequest, context: ServicerContext
    ) -> pb.StartVideoUploadResponse:
        raise Unimplemented(f"StartVideoUpload {_VIDEO_ISSUE}")

    async def CompleteVideoUpload(
        self, request: pb.CompleteVideoUploadRequest, context: ServicerContext
    ) -> pb.CompleteVideoUploadResponse:
        raise Unimplemented(f"CompleteVideoUpload {_VIDEO_ISSUE}")

    async def AbortVideoUpload(
        self, request: pb.AbortVideoUploadRequest, context: ServicerContext
    ) -> pb.AbortVideoUploadResponse:
        raise Unimplemented(f"AbortVideoUpload {_VIDEO_ISSUE}")

    async def GetTranscodingStatus(
        self, request: pb.GetTranscodingStatusRequest, context: ServicerContext
    ) -> pb.GetTranscodingStatusResponse:
        raise Unimplemented(f"GetTranscodingStatus {_VIDEO_ISSUE}")

    async def GetPlaybackUrl(
        self, request: pb.GetPlaybackUrlRequest, context: ServicerContext
    ) -> pb.GetPlaybackUrlResponse:
        raise Unimplemented(f"GetPlaybackUrl {_VIDEO_ISSUE}")
