"""The shared cache's serializer (CACHES OPTIONS "serializer"): bare integers and JSON, never pickle.
Owns how throttle and sign-in values are written to and read back from Redis.

Django's RedisSerializer unpickles every value that is not an integer, and the cache lives on the broker's
Redis: whoever could write a key there (the web reads keys anyone can compute, such as an e-mail address's
sign-in lock) ran code in every web process, which holds the master key, the audit signing key and Stripe's.
"""

from __future__ import annotations

import json
import logging

logger = logging.getLogger(__name__)


class JsonCacheSerializer:
    """Integers as they are (Redis's own, so INCR and DECR work on them, as with Django's serializer);
    everything else as JSON, and a value JSON cannot hold is refused when stored (TypeError). What is read
    and is neither (written by something else, planted) is no value: None, so `cache.get` treats it as a
    miss, and nothing in it is ever run."""

    def dumps(self, obj: object) -> int | bytes:
        # type(), not isinstance(): a bool is JSON (true/false), as Django's serializer pickles it.
        if type(obj) is int:
            return obj
        return json.dumps(obj, separators=(",", ":")).encode()

    def loads(self, data: bytes | str) -> object:
        try:
            return int(data)
        except ValueError:
            pass
        try:
            return json.loads(data)
        except (ValueError, TypeError):
            logger.warning("shared cache value ignored: neither an integer nor JSON")
            return None
