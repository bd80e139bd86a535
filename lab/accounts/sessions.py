"""Sign-in sessions in the database, each stored under a keyed hash of its key (SESSION_ENGINE).

Django's database backend keeps a session's key, which is the cookie itself, in plain text: whoever reads
`django_session` (a database administrator, a leaked backup) could put a live supervisor's key in a browser
cookie and be that supervisor, and every photo viewed would be recorded under the supervisor's name. Here the
row holds HMAC(SECRET_KEY, salted for this use) of the key, so nothing read from the database opens a session.
A SECRET_KEY rotation signs everyone out.
"""

from __future__ import annotations

from typing import Any

from django.contrib.sessions.backends import db
from django.utils import timezone

from lab.lib.seals import seal_of

SESSION_KEY_SALT = "lab.accounts.sessions"
_STORED_KEY_LENGTH = 40  # Django's session_key column


def stored_key(session_key: str) -> str:
    """The row's key for a session key (the cookie's value)."""
    return seal_of(SESSION_KEY_SALT, session_key)[:_STORED_KEY_LENGTH]


class SessionStore(db.SessionStore):
    def _get_session_from_db(self) -> Any:
        assert self.session_key is not None
        try:
            return self.model.objects.get(
                session_key=stored_key(self.session_key), expire_date__gt=timezone.now()
            )
        except self.model.DoesNotExist:
            self._session_key = None
            return None

    def exists(self, session_key: str) -> bool:
        return bool(self.model.objects.filter(session_key=stored_key(session_key)).exists())

    def create_model_instance(self, data: dict[str, Any]) -> Any:
        return self.model(
            session_key=stored_key(self._get_or_create_session_key()),  # type: ignore[attr-defined]
            session_data=self.encode(data),
            expire_date=self.get_expiry_date(),
        )

    def delete(self, session_key: str | None = None) -> None:
        if session_key is None:
            if self.session_key is None:
                return
            session_key = self.session_key
        self.model.objects.filter(session_key=stored_key(session_key)).delete()
