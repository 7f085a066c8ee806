"""svc_user: accounts, roles, login, and JWT access + rotating refresh tokens (finding I1)."""
