"""The runtime every service shares: settings, server bootstrap, interceptors, auth verification,
pools for Postgres, Valkey, NATS and gRPC peers, the outbox relay, metrics and logging.
No business rules live here."""
