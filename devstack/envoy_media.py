"""The edge's media route: `/<bucket>/…` goes to the S3 gateway unchanged, so browsers on the
edge's origin upload parts and fetch HLS files with presigned URLs, and no Python process ever
carries video bytes.

Why unchanged: a presigned URL signs the method, the path and the Host header. The services
presign against the edge's address (S3_PUBLIC_URL) with path-style addressing, so the signed
path is `/<bucket>/<key>` and the signed host is the edge's. Envoy keeps both as they are (no
prefix rewrite, no host rewrite), so the gateway recomputes the very same signature. The
public prefix is therefore the bucket's name (`/media/` by default).

It is added to the rendered edge config as a separate step (one route first in the virtual
host, one cluster) so the edge's own renderer stays unaware of object storage.
"""

from __future__ import annotations

from typing import Any

import yaml

MEDIA_CLUSTER = "media"
# A 10 MiB part on a slow uplink takes minutes; the idle timeout still cuts a stalled one.
MEDIA_IDLE_TIMEOUT = "120s"
_FILTER_CONFIG = "type.googleapis.com/envoy.config.route.v3.FilterConfig"
_CORS_POLICY = "type.googleapis.com/envoy.extensions.filters.http.cors.v3.CorsPolicy"
_CORS_FILTER = "envoy.filters.http.cors"
# Filters that only make sense for gRPC/JSON calls: the JSON transcoder would refuse an unknown
# path, and the JSON body limit would refuse a 10 MiB part.
_SKIPPED_TYPES = ("GrpcJsonTranscoder", "BodySizeLimit")


def with_media_route(config_yaml: str, *, bucket: str, host: str, port: int) -> str:
    config = yaml.load(config_yaml, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    resources = config["static_resources"]
    hcm = resources["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
    virtual_host = hcm["route_config"]["virtual_hosts"][0]
    virtual_host["routes"].insert(0, media_route(bucket, hcm["http_filters"], virtual_host))
    resources["clusters"].append(media_cluster(host, port))
    dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
    return str(yaml.dump(config, Dumper=dumper, sort_keys=False, width=100))


def media_route(
    bucket: str, http_filters: list[dict[str, Any]], virtual_host: dict[str, Any]
) -> dict[str, Any]:
    per_filter: dict[str, Any] = {
        f["name"]: {"@type": _FILTER_CONFIG, "disabled": True}
        for f in http_filters
        if f.get("typed_config", {}).get("@type", "").endswith(_SKIPPED_TYPES)
    }
    cors = virtual_host.get("typed_per_filter_config", {}).get(_CORS_FILTER)
    if cors is not None:
        # The edge's allowed origins, with what an S3 client needs: PUT for parts, the ETag of
        # each part readable by the page (CompleteVideoUpload wants it), Range for players.
        per_filter[_CORS_FILTER] = {
            **cors,
            "@type": _CORS_POLICY,
            "allow_methods": "GET, HEAD, PUT, OPTIONS",
            "allow_headers": "content-type, content-length, content-md5, range",
            "expose_headers": "etag, content-length, content-range, accept-ranges",
        }
    return {
        "match": {"prefix": f"/{bucket}/"},
        "route": {
            "cluster": MEDIA_CLUSTER,
            # No overall timeout: a part or a segment takes as long as the link needs.
            "timeout": "0s",
            "idle_timeout": MEDIA_IDLE_TIMEOUT,
            # A part's body is streamed, not buffered, so it could not be replayed anyway.
            "retry_policy": {"num_retries": 0},
        },
        "typed_per_filter_config": per_filter,
    }


def media_cluster(host: str, port: int) -> dict[str, Any]:
    return {
        "name": MEDIA_CLUSTER,
        "type": "STATIC",
        "connect_timeout": "2s",
        "load_assignment": {
            "cluster_name": MEDIA_CLUSTER,
            "endpoints": [
                {
                    "lb_endpoints": [
                        {"endpoint": {"address": {"socket_address": {
                            "address": host, "port_value": port
                        }}}}
                    ]
                }
            ],
        },
    }  # fmt: skip
