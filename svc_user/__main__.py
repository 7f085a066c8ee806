import uvloop

from svc_user.server import serve

if __name__ == "__main__":
    uvloop.run(serve())
