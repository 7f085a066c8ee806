"""Who may call which UserService method. Object checks (an account reads only itself
unless admin) are in the servicer."""

from mesh.auth import PUBLIC, SIGNED_IN, Policy, role

_S = "/elearn.user.v1.UserService/"

POLICY = Policy(
    {
        _S + "Register": PUBLIC,
        _S + "Login": PUBLIC,
        # The refresh token itself is the credential.
        _S + "Refresh": PUBLIC,
        _S + "Logout": PUBLIC,
        _S + "GetMe": SIGNED_IN,
        _S + "UpdateMe": SIGNED_IN,
        _S + "GetUser": SIGNED_IN,
        _S + "ListUsers": role("admin"),
        _S + "GrantRole": role("admin"),
        _S + "RevokeRole": role("admin"),
    }
)
