"""svc_course: CourseService — catalog, search, enrollment and video progress. Uploads,
transcoding and playback answer UNIMPLEMENTED until the video issue lands."""
