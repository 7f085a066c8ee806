"""svc_live: LiveService. Its implementation lands with issue #5; until then it starts,
reports SERVING and answers UNIMPLEMENTED, never a fake success."""
