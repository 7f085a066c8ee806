import uvloop

from svc_analytics.server import serve

if __name__ == "__main__":
    uvloop.run(serve())
