"""Stateless session tokens: ``<username>.<hex HMAC-SHA256 of username>``.

The token carries the username so it can be checked without server-side session storage, which
keeps several replicas (and a restarted process with a fixed UNITED_CARS_SECRET_KEY) in
agreement. The same token is accepted as a session cookie and as a bearer token.
"""

from __future__ import annotations

import hashlib
import hmac

SESSION_COOKIE = "united_cars_session"


def make_token(username: str, key: bytes) -> str:
    digest = hmac.new(key, username.encode(), hashlib.sha256).hexdigest()
    return f"{username}.{digest}"


def verify_token(token: str, key: bytes) -> str | None:
    """Return the username the token was issued to, or None if it is not genuine."""
    username, sep, _ = token.rpartition(".")
    if not sep or not username:
        return None
    # compare_digest: a plain == leaks how many leading characters matched.
    if hmac.compare_digest(make_token(username, key), token):
        return username
    return None


def check_password(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.encode(), expected.encode())
