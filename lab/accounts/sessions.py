"""Sign-in sessions in the database, each stored under a keyed hash of its key (SESSION_ENGINE).

Django's database backend keeps a session's key, which is the cookie itself, in plain text: whoever reads
`django_session` (a database administrator, a leaked backup) could put a live supervisor's key in a browser
cookie and be that supervisor, and every photo viewed would be recorded under the supervisor's name. Here the
row holds HMAC(SECRET_KEY, salted for this use) of the key, so nothing read from the database opens a session.
A SECRET_KEY rotation signs everyone out.

A session's data is signed for its own key. Django signs it under SECRET_KEY with one salt for every session,
so someone who can write the table could copy a live admin's session data onto the row of a session whose
cookie they hold, and be the admin. Here the salt also names the session's key, so data copied from another
row does not decode: that session is empty (signed out). Deploying this signed every session out once.

A session's expiry is written and judged on the database's clock (as claims and photo grants are: lab/lib/
clock.py), not on the clock of the web host that happens to serve the request: a host running behind kept
idle staff sessions alive past their idle timeout, one running ahead signed everyone out.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from django.contrib.sessions.backends import db
from django.db.models.functions import Now

from lab.lib.seals import seal_of

SESSION_KEY_SALT = "lab.accounts.sessions"
_STORED_KEY_LENGTH = 40  # Django's session_key column


def stored_key(session_key: str) -> str:
    """The row's key for a session key (the cookie's value)."""
    return seal_of(SESSION_KEY_SALT, session_key)[:_STORED_KEY_LENGTH]


class SessionStore(db.SessionStore):
    # The database's clock when this session was read (None: not read from the database): what the staff
    # pages' idle timeout is judged by, with no query of its own (lab/staff/middleware.py).
    read_at: datetime | None = None

    @property
    def key_salt(self) -> str:
        # Data is encoded (create, save, cycle_key) and decoded (load) with the session's key already set:
        # create() picks the new key before it saves, and load() reads the row under the cookie's key.
        return f"{super().key_salt}:{self.session_key}"

    def _get_session_from_db(self) -> Any:
        assert self.session_key is not None
        try:
            found = self.model.objects.annotate(read_at=Now()).get(
                session_key=stored_key(self.session_key), expire_date__gt=Now()
            )
        except self.model.DoesNotExist:
            self._session_key = None
            return None
        self.read_at = found.read_at
        return found

    def exists(self, session_key: str) -> bool:
        return bool(self.model.objects.filter(session_key=stored_key(session_key)).exists())

    def create_model_instance(self, data: dict[str, Any]) -> Any:
        return self.model(
            session_key=stored_key(self._get_or_create_session_key()),  # type: ignore[attr-defined]
            session_data=self.encode(data),
            # Written by the database: its clock, whatever this host's says.
            expire_date=Now() + timedelta(seconds=self.get_expiry_age()),
        )

    def delete(self, session_key: str | None = None) -> None:
        if session_key is None:
            if self.session_key is None:
                return
            session_key = self.session_key
        self.model.objects.filter(session_key=stored_key(session_key)).delete()

    @classmethod
    def clear_expired(cls) -> None:
        sessions_expired_delete()


def sessions_expired_delete() -> int:
    """Delete the sessions that have ended (the retention sweep, `manage.py clearsessions`): a signed-out or
    idle session's row, with the account it names, is kept no longer than it is live."""
    deleted, _ = SessionStore.get_model_class().objects.filter(expire_date__lt=Now()).delete()
    return deleted
