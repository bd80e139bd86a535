"""Which API token authenticated a request's User: the token a password confirmation made with it is counted
against (lab/accounts/signin.py), and the one a revocation may end without the password (tokens.py)."""

from __future__ import annotations

from lab.accounts.models import ApiToken, User

# On the User instance the token authentication returns (request.user), as `_lab_roles` caches its roles:
# the services My Account calls are given that instance, so they know the token without the view passing
# it. A User read any other way (a session, the database) has none.
_ATTRIBUTE = "_lab_api_token"


def token_of_request_set(user: User, token: ApiToken) -> None:
    setattr(user, _ATTRIBUTE, token)


def token_of_request(user: User) -> ApiToken | None:
    """The API token `user` was authenticated by in this request, or None (a session, or not a request's)."""
    token = getattr(user, _ATTRIBUTE, None)
    return token if isinstance(token, ApiToken) and token.user_id == user.pk else None
