"""Pure logic of the video pipeline: part sizes, the ladder, playlist rewriting, the edge's
media route."""

from __future__ import annotations

import yaml

from devstack.envoy_media import with_media_route
from svc_course.playback import rewrite, uri_lines
from svc_course.transcoder.ladder import rungs_for, width_for
from svc_course.uploads import MIB, S3_MAX_PARTS, part_count, part_size_for

GIB = 1024**3


def test_video_part_size_is_10_mib_until_s3s_part_limit_needs_more() -> None:
    assert part_size_for(1, 10 * MIB) == 10 * MIB
    assert part_size_for(20 * GIB, 10 * MIB) == 10 * MIB  # 2,048 parts
    big = part_size_for(200 * GIB, 10 * MIB)
    assert big % MIB == 0 and part_count(200 * GIB, big) <= S3_MAX_PARTS
    assert part_count(10 * MIB, 10 * MIB) == 1
    assert part_count(10 * MIB + 1, 10 * MIB) == 2


def test_video_ladder_never_goes_above_the_source() -> None:
    assert [r.name for r in rungs_for(1080)] == ["360p", "720p", "1080p"]
    assert [r.name for r in rungs_for(720)] == ["360p", "720p"]
    assert [r.name for r in rungs_for(2160)] == ["360p", "720p", "1080p"]
    assert [r.name for r in rungs_for(241)] == ["240p"]  # below the lowest rung: its own, even
    assert width_for(360, 1920, 1080) == 640
    assert width_for(360, 1000, 1000) == 360


def test_video_playlist_rewrite_signs_every_uri_and_keeps_tags() -> None:
    playlist = "#EXTM3U\n#EXTINF:4.0,\nseg_00000.ts\n#EXTINF:2.0,\nseg_00001.ts\n#EXT-X-ENDLIST\n"
    signed = {u: f"http://edge/media/x/{u}?sig=1" for u in uri_lines(playlist)}
    out = rewrite(playlist, signed)
    assert uri_lines(out) == [signed["seg_00000.ts"], signed["seg_00001.ts"]]
    assert out.count("#EXTINF") == 2 and "#EXT-X-ENDLIST" in out


def test_video_media_route_goes_first_without_rewrites_or_json_filters() -> None:
    filters = [
        {"name": "t", "typed_config": {"@type": "x.GrpcJsonTranscoder"}},
        {"name": "r", "typed_config": {"@type": "x.Router"}},
    ]
    hcm_in = {
        "route_config": {"virtual_hosts": [{"routes": [{"match": {"prefix": "/"}}]}]},
        "http_filters": filters,
    }
    listener = {"filter_chains": [{"filters": [{"typed_config": hcm_in}]}]}
    config = {"static_resources": {"listeners": [listener], "clusters": []}}
    out = yaml.safe_load(
        with_media_route(yaml.safe_dump(config), bucket="media", host="127.0.0.1", port=9)
    )
    resources = out["static_resources"]
    hcm = resources["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
    route = hcm["route_config"]["virtual_hosts"][0]["routes"][0]
    assert route["match"] == {"prefix": "/media/"}
    assert "prefix_rewrite" not in route["route"] and "host_rewrite_literal" not in route["route"]
    assert route["typed_per_filter_config"]["t"]["disabled"] is True
    assert "r" not in route["typed_per_filter_config"]
    assert resources["clusters"][0]["name"] == "media"
