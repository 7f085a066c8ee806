import uvloop

from elearn.live.v1 import live_service_pb2_grpc as grpc_api
from mesh.unimplemented import serve_unimplemented
from svc_live.settings import LiveSettings

if __name__ == "__main__":
    uvloop.run(
        serve_unimplemented(
            LiveSettings.load(),
            "elearn.live.v1.LiveService",
            grpc_api.LiveServiceServicer,
            grpc_api.add_LiveServiceServicer_to_server,
            "issue #5",
        ),
    )
