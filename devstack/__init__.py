"""The local stack: real Postgres, Valkey, NATS and Envoy from wheels, the services, and the
code generator. Nothing here runs in production; deploy/ is the many-machine shape."""
