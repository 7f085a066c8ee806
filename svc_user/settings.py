"""svc_user settings, read from USER_* variables plus the shared ones (see mesh.config)."""

from __future__ import annotations

from typing import ClassVar

from pydantic_settings import SettingsConfigDict

from mesh.config import MeshSettings


class UserSettings(MeshSettings):
    model_config = SettingsConfigDict(env_prefix="USER_", extra="ignore", populate_by_name=True)
    service: ClassVar[str] = "user"

    jwt_private_key_file: str = ""
    # Short-lived: a stolen access token is useful for at most this long, and revocation
    # entries in every verifier live this long too (mesh.auth).
    access_token_ttl_seconds: int = 900
    refresh_token_ttl_days: int = 30
    # Bootstrap admin: created at start-up when both are set (the launcher sets them).
    admin_email: str = ""
    admin_password: str = ""
    # Sign-in attempts are counted before the password is checked, in fixed windows, on three
    # counters (a success refunds its attempt). The (account, client address) pair is limited
    # hard, so guessing from one place stops quickly; the account as a whole gets a higher
    # limit, so five bad guesses from one place do not lock its owner out everywhere while a
    # guesser spread over many addresses still stops; one address across all accounts gets the
    # highest (a campus NAT has many users), which stops password spraying.
    login_pair_limit: int = 5
    login_account_limit: int = 50
    login_address_limit: int = 100
    login_window_seconds: int = 900
    # Peers whose X-Forwarded-For is believed: the edge's addresses (comma-separated networks).
    # From them the last hop, the one Envoy appended, is the client; anyone else is keyed by
    # its own peer address, so a direct caller cannot pick an address with a header. Loopback
    # covers the devstack and an Envoy sidecar; set the edge's pod network in a cluster.
    trusted_proxies: str = "127.0.0.0/8,::1/128"
    # A refresh token presented again this soon after it was spent, with its family intact, is
    # taken for a retry (a double click, a lost answer) and gets the same successor; later it
    # is a replay and revokes the family. Short, since inside it a thief racing the owner wins.
    refresh_reuse_grace_seconds: int = 10
    # Refresh token rows dead (expired, spent or revoked) for longer than this are deleted in
    # batches; a spent token replayed after that is refused as unknown, no longer as a replay.
    refresh_purge_after_days: int = 14
    refresh_purge_batch: int = 1000
    refresh_purge_interval_seconds: float = 3600.0
    # Password hashes run on this many threads (argon2 releases the GIL); callers beyond
    # threads + queue are shed with RESOURCE_EXHAUSTED instead of queueing without bound.
    hash_threads: int = 2
    hash_queue: int = 32
    # OWASP's minimum argon2id parameters: ~27 ms per hash here (the library default is ~105 ms).
    argon2_time_cost: int = 2
    argon2_memory_kib: int = 19_456
    argon2_parallelism: int = 1
    profile_cache_ttl_seconds: int = 1800
