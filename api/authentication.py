"""API token authentication: `Authorization: Token <key>`, looked up by the SHA-256 of the key.

Keys of the wrong shape are refused before the database; staff accounts never authenticate with a token
(they use the lab pages, or the auditors' console session).
"""

from __future__ import annotations

from typing import Any

from rest_framework import authentication, exceptions

from lab.accounts.tokens import api_token_authenticate
from lab.lib.client_ip import client_ip


class TokenAuthentication(authentication.TokenAuthentication):
    # The client's address, for the security event of a token refused because its account's seal does not
    # hold (DRF makes an authenticator per request, so this is the request's own).
    client_ip: str | None = None

    def authenticate(self, request: Any) -> tuple[Any, Any] | None:
        self.client_ip = client_ip(request._request) or None  # behind TRUSTED_PROXIES, the client's
        return super().authenticate(request)

    def authenticate_credentials(self, key: str) -> tuple[Any, Any]:
        found = api_token_authenticate(key=key, client_ip=self.client_ip)
        if found is None:
            raise exceptions.AuthenticationFailed("Invalid token.")
        return found
