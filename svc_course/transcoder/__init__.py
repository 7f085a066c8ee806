"""The transcoder worker process (`python -m svc_course.transcoder`): pulls jobs from the
JetStream work queue one at a time and turns uploads into HLS (see worker.py)."""
