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
    # Failed sign-ins per account inside the window before sign-in is refused for the rest of
    # the window; slows online guessing without a global lock-out.
    login_max_failures: int = 5
    login_failure_window_seconds: int = 900
    # Password hashes run on this many threads (argon2 releases the GIL); callers beyond
    # threads + queue are shed with RESOURCE_EXHAUSTED instead of queueing without bound.
    hash_threads: int = 2
    hash_queue: int = 32
    # OWASP's minimum argon2id parameters: ~27 ms per hash here (the library default is ~105 ms).
    argon2_time_cost: int = 2
    argon2_memory_kib: int = 19_456
    argon2_parallelism: int = 1
    profile_cache_ttl_seconds: int = 1800
