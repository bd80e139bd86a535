"""API token authentication: DRF's, with the key's shape checked before it is looked up.

A key that cannot be a token (NUL bytes, junk) is refused as a failed login instead of reaching PostgreSQL.
"""

from __future__ import annotations

import re
from typing import Any

from rest_framework import authentication, exceptions

_TOKEN_KEY = re.compile(r"[0-9a-f]{40}")  # rest_framework.authtoken keys: 20 random bytes in hex


class TokenAuthentication(authentication.TokenAuthentication):
    def authenticate_credentials(self, key: str) -> tuple[Any, Any]:
        if _TOKEN_KEY.fullmatch(key) is None:
            raise exceptions.AuthenticationFailed("Invalid token.")
        return super().authenticate_credentials(key)
