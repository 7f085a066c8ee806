"""svc_live: LiveService — live sessions of a course over gRPC streams, fanned out across pods
through core NATS with one sequencer per session in the state Valkey (see README, "Live
sessions")."""
