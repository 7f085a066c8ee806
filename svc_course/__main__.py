import uvloop

from svc_course.server import serve

if __name__ == "__main__":
    uvloop.run(serve())
