"""The shared cache (Redis, the broker's instance) stores JSON and bare integers only, and never unpickles
what it reads: whoever can write to that Redis must not run code in the web processes (lab/lib/cache.py).

Django's RedisCache unpickles every value that is not an integer; the sign-in check reads a key anyone can
compute (`signin:account:<sha256 of an e-mail>:locked_until`) on every anonymous POST auth/token.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
import redis
from django.conf import settings
from django.core.cache import cache
from django.core.cache.backends.redis import RedisCache, RedisSerializer

from lab.accounts.models import SecurityEvent
from lab.accounts.signin import SignInAttempt
from lab.lib.cache import JsonCacheSerializer
from tests.support.redis_server import PrivateRedis
from tests.support.settings_import import settings_imported

READ_BACK_CACHES = "import json; from lab import settings; print(json.dumps(settings.CACHES['default']))"


class _Planted:
    """A pickle that, when loaded, makes the directory `marker`: proof that the load ran code."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return (os.mkdir, (str(self.marker),))


def _pickle_of(marker: Path) -> bytes:
    import pickle

    return pickle.dumps(_Planted(marker))


@pytest.fixture
def private_redis() -> Any:
    with PrivateRedis() as server:
        yield server


def _cache_as_configured_for_a_redis_broker(tmp_path: Path, redis_server: PrivateRedis) -> RedisCache:
    """The cache lab.settings derives from a Redis broker (no CACHE_URL), read from a new settings import."""
    completed = settings_imported(
        tmp_path / "var",
        READ_BACK_CACHES,
        {"CELERY_BROKER_URL": redis_server.url(db=4)},
        unset=("CACHE_URL", "CACHE_URL_FILE"),
    )
    assert completed.returncode == 0, completed.stderr
    config = json.loads(completed.stdout)
    assert (config["BACKEND"], config["LOCATION"]) == (
        "django.core.cache.backends.redis.RedisCache",
        redis_server.url(db=5),
    )
    return RedisCache(config["LOCATION"], config)


def test_a_pickle_planted_in_the_shared_cache_is_never_loaded(tmp_path: Path, private_redis: PrivateRedis):
    # given the cache as the settings make it, and a pickle written straight into its Redis at a sign-in key
    shared = _cache_as_configured_for_a_redis_broker(tmp_path, private_redis)
    marker = tmp_path / "pickle-ran"
    key = "signin:account:0123abcd:locked_until"
    redis.Redis.from_url(private_redis.url(db=5)).set(shared.make_key(key), _pickle_of(marker))

    # when the web reads it
    read = shared.get(key)

    # then it is a miss, and the pickle never ran
    assert read is None
    assert not marker.exists()


def test_values_round_trip_as_json_and_counters_stay_bare_integers(
    tmp_path: Path, private_redis: PrivateRedis
):
    shared = _cache_as_configured_for_a_redis_broker(tmp_path, private_redis)
    raw = redis.Redis.from_url(private_redis.url(db=5))
    values: dict[str, Any] = {
        "float": 1765000000.25,  # the sign-in lock's time, a throttle window's start
        "history": [1765000000.5, 1765000001.0],  # DRF's SimpleRateThrottle keeps a list of floats
        "mapping": {"a": [1, "b", None, True]},
        "text": "12",
        "flag": False,
        "nothing": None,
    }

    for key, value in values.items():
        shared.set(key, value, timeout=60)
    shared.add("count", 0, timeout=60)
    counted = [shared.incr("count"), shared.incr("count", 5), shared.decr("count")]

    assert {key: shared.get(key, "missing") for key in values} == values
    assert shared.get("count") == 5
    assert counted == [1, 6, 5]
    assert raw.get(shared.make_key("count")) == b"5"  # INCR works on it: stored as Redis's own integer
    assert raw.get(shared.make_key("float")) == b"1765000000.25"
    assert raw.get(shared.make_key("text")) == b'"12"'  # a string of digits is no counter: it stays a string


def test_a_value_json_cannot_hold_is_refused_when_stored(tmp_path: Path, private_redis: PrivateRedis):
    shared = _cache_as_configured_for_a_redis_broker(tmp_path, private_redis)

    with pytest.raises(TypeError):
        shared.set("object", object(), timeout=60)

    assert shared.get("object", "missing") == "missing"


def test_a_sign_in_with_a_pickle_planted_under_its_lock_key_runs_no_code(api, tmp_path: Path, db):
    # given the test command's cache, on its Redis broker as in production, and a pickle under the key the
    # sign-in check reads for this address
    assert settings.CACHES["default"]["BACKEND"] == "django.core.cache.backends.redis.RedisCache"
    marker = tmp_path / "pickle-ran"
    email = "nobody@example.org"
    attempt = SignInAttempt(email=email, client_ip=None, channel=SecurityEvent.Channel.API)
    _, holder, _ = attempt.holder()
    raw = redis.Redis.from_url(str(settings.CACHES["default"]["LOCATION"]))
    raw.set(cache.make_key(f"{holder}:locked_until"), _pickle_of(marker), ex=60)

    # when anyone asks for a token with that address
    response = api.post("/api/v1/auth/token", {"email": email, "password": "a guess"}, format="json")

    # then the planted value counts as no lock, and it never ran
    assert response.status_code == 401
    assert not marker.exists()


def test_every_value_the_lab_writes_to_the_shared_cache_is_a_whole_number(api, db, settings, monkeypatch):
    # given every value the lab writes to the shared cache recorded, a sign-in limit of two failures and a
    # registration quota of two an hour
    written: list[object] = []
    dumps = JsonCacheSerializer.dumps

    def recorded(self: JsonCacheSerializer, obj: object) -> int | bytes:
        written.append(obj)
        return dumps(self, obj)

    monkeypatch.setattr(JsonCacheSerializer, "dumps", recorded)
    settings.SIGNIN_ACCOUNT_FAILURES = 2
    settings.REST_FRAMEWORK = {
        **settings.REST_FRAMEWORK,
        "DEFAULT_THROTTLE_RATES": {
            **settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"],
            "registration": "2/hour",
        },
    }

    # when an account is locked by wrong passwords and registrations are throttled
    guesses = [
        api.post("/api/v1/auth/token", {"email": "locked@example.org", "password": "a guess"}, format="json")
        for _ in range(3)
    ]
    registrations = [api.post("/api/v1/accounts", {}, format="json") for _ in range(3)]

    # then the lock and the window's start were written, each a whole number: Django's own serializer,
    # which a previous version's web processes on the same Redis use during a rolling upgrade, reads an
    # integer but raised on a float written as JSON (their sign-ins and throttled requests answered 500)
    assert [response.status_code for response in guesses][-1] == 429
    assert [response.status_code for response in registrations] == [400, 400, 429]
    assert written and all(type(value) is int for value in written), written
    assert all(RedisSerializer().loads(dumps(JsonCacheSerializer(), value)) == value for value in written)
