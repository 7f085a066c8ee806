"""svc_analytics: AnalyticsService. Its implementation lands with issue #6; until then it starts,
reports SERVING and answers UNIMPLEMENTED, never a fake success."""
