"""API token authentication: `Authorization: Token <key>`, looked up by the SHA-256 of the key.

Keys of the wrong shape are refused before the database; staff accounts never authenticate with a token
(they use the lab pages, or the auditors' console session).
"""

from __future__ import annotations

from typing import Any

from rest_framework import authentication, exceptions

from lab.accounts.tokens import api_token_authenticate


class TokenAuthentication(authentication.TokenAuthentication):
    def authenticate_credentials(self, key: str) -> tuple[Any, Any]:
        found = api_token_authenticate(key=key)
        if found is None:
            raise exceptions.AuthenticationFailed("Invalid token.")
        return found
