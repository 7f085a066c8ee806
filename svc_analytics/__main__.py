import uvloop

from elearn.analytics.v1 import analytics_service_pb2_grpc as grpc_api
from mesh.unimplemented import serve_unimplemented
from svc_analytics.settings import AnalyticsSettings

if __name__ == "__main__":
    uvloop.run(
        serve_unimplemented(
            AnalyticsSettings.load(),
            "elearn.analytics.v1.AnalyticsService",
            grpc_api.AnalyticsServiceServicer,
            grpc_api.add_AnalyticsServiceServicer_to_server,
            "issue #6",
        ),
    )
