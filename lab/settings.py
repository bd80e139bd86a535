"""The one settings module of the print lab.

Every value comes from the environment with an embedded default that runs on one machine
(SQLite and a filesystem broker under var/); README.md lists every variable.
"""

from __future__ import annotations

import base64
import ipaddress
import os
import secrets
import sys
from collections.abc import Callable
from pathlib import Path

import dj_database_url
import django_stubs_ext
from django.core.exceptions import ImproperlyConfigured

from lab.lib.currency import minor_unit_digits

# Django's admin and form classes accept their model as a type argument (ModelAdmin[Printer]) at run time too,
# as mypy reads them: this only adds __class_getitem__ to them.
django_stubs_ext.monkeypatch()

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(os.environ.get("LAB_VAR_DIR", BASE_DIR / "var"))

_TRUE_WORDS = frozenset({"1", "true", "yes", "on"})
_FALSE_WORDS = frozenset({"0", "false", "no", "off"})


def envbool(name: str, default: str) -> bool:
    # A typo must not read as "false": SECURE_COOKIES=ture silently meant insecure cookies.
    value = os.environ.get(name, default).strip().lower()
    if value in _TRUE_WORDS:
        return True
    if value in _FALSE_WORDS:
        return False
    raise ImproperlyConfigured(f"{name}={value!r} is not a boolean: use true/false, 1/0, yes/no or on/off.")


def envint(name: str, default: int) -> int:
    return int(os.environ.get(name, str(default)))


def envlist(name: str, default: str = "") -> list[str]:
    return [part.strip() for part in os.environ.get(name, default).split(",") if part.strip()]


def env_secret(name: str, default: str = "") -> str:
    """NAME, or the content of the file named by NAME_FILE (a mounted secret), else `default`."""
    value, path = os.environ.get(name, ""), os.environ.get(f"{name}_FILE", "")
    if value and path:
        raise ImproperlyConfigured(f"Set {name} or {name}_FILE, not both.")
    if path:
        try:
            content = Path(path).read_text()
        except OSError as error:
            raise ImproperlyConfigured(f"{name}_FILE={path}: cannot read it ({error.strerror}).") from error
        value = content.removesuffix("\n").removesuffix("\r")
        if not value:
            raise ImproperlyConfigured(f"{name}_FILE={path} is empty.")
    return value or default


# The embedded demo (scripts/run) and the test command generate their secrets once under var/; nothing else
# may: a worker host missing the master key would encrypt with a key of its own.
DEMO_SECRETS = envbool("LAB_DEMO_SECRETS", "false")
# django-stubs imports settings to read names while type checking; it serves nothing and keeps no secret.
_TYPE_CHECKING_ONLY = "mypy" in sys.modules


def required_secret(name: str, *, demo_file: str, make: Callable[[], str], how: str) -> str:
    """The secret from NAME / NAME_FILE; in demo mode generated once into var/<demo_file>; else a stop."""
    value = env_secret(name)
    if value:
        return value
    if DEMO_SECRETS:
        VAR_DIR.mkdir(parents=True, exist_ok=True)
        path = VAR_DIR / demo_file
        if not path.exists():
            path.write_text(make())
            path.chmod(0o600)
        return path.read_text().strip()
    if _TYPE_CHECKING_ONLY:
        return f"type-checking-only-{name}"
    raise ImproperlyConfigured(
        f"{name} is not set. Set {name} (or {name}_FILE, a file holding it) from your secret store; "
        f"generate one with: {how}. On a development machine, LAB_DEMO_SECRETS=true generates "
        f"throw-away keys under {VAR_DIR}."
    )


_PYTHON = "python3 -c"
_RANDOM_32_BYTES = "base64.b64encode(secrets.token_bytes(32)).decode()"

DEBUG = envbool("DEBUG", "false")
SECRET_KEY = required_secret(
    "SECRET_KEY",
    demo_file="secret_key",
    make=lambda: secrets.token_urlsafe(50),
    how=f"{_PYTHON} 'import secrets; print(secrets.token_urlsafe(50))'",
)
# Earlier SECRET_KEYs, comma-separated, during a rotation: sessions' data, signed values and every seal made
# under one of them (lab/lib/seals.py) keep holding until it is dropped.
SECRET_KEY_FALLBACKS = [key for key in env_secret("SECRET_KEY_FALLBACKS").split(",") if key]
ALLOWED_HOSTS = envlist("ALLOWED_HOSTS", "localhost,127.0.0.1,[::1],testserver")
CSRF_TRUSTED_ORIGINS = envlist("CSRF_TRUSTED_ORIGINS")


def _site_url() -> str:
    """The public base URL: every e-mailed receipt link (its bearer token in the URL), status link and QR code
    is built from it. Outside demo mode it must be set, and https: the default mailed dead links from a
    production host, and an http:// value sent the receipts' tokens in cleartext."""
    value = os.environ.get("SITE_URL", "").strip()
    if DEMO_SECRETS or _TYPE_CHECKING_ONLY:
        return value or "http://127.0.0.1:8000"
    if not value:
        raise ImproperlyConfigured(
            "SITE_URL is not set. Set SITE_URL to the lab's public https:// address (e.g. "
            "SITE_URL=https://lab.example.com): e-mailed receipt links and status links are built from it. "
            "On a development machine, LAB_DEMO_SECRETS=true uses http://127.0.0.1:8000."
        )
    scheme, _, rest = value.partition("://")
    if scheme.lower() != "https" or not rest.strip("/"):
        raise ImproperlyConfigured(
            f"SITE_URL={value!r} is not an https:// address: the e-mailed receipt links carry their bearer "
            "token in the URL. Set SITE_URL to the lab's public https:// address (e.g. "
            "SITE_URL=https://lab.example.com)."
        )
    return value


SITE_URL = _site_url()
LAB_NAME = os.environ.get("LAB_NAME", "Print Lab")
LAB_CONTACT = os.environ.get("LAB_CONTACT", "lab@example.com")

INSTALLED_APPS = [
    # The lab admin's site (lab/staff/admin) only: no autodiscover, so Django's default site stays empty.
    "django.contrib.admin.apps.SimpleAdminConfig",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "django_filters",
    "drf_spectacular",
    "django_htmx",
    "lab.accounts",
    "lab.catalog",
    "lab.orders",
    "lab.production",
    "lab.packing",
    "lab.audit",
    "lab.gate",
    "lab.privacy",
    "lab.customer_data",
    "lab.notify",
    "lab.staff",
]

MIDDLEWARE = [
    # First: forwarded headers from anyone but TRUSTED_PROXIES are dropped before the SSL redirect reads them.
    "lab.lib.middleware.RequestIdMiddleware",
    "lab.observability.middleware.RequestMetricsMiddleware",  # latency of everything below, redirects too
    "django.middleware.security.SecurityMiddleware",
    "api.middleware.ApiRequestLimitsMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "lab.staff.middleware.StaffPagesMiddleware",
]

ROOT_URLCONF = "lab.urls"
WSGI_APPLICATION = "lab.wsgi.application"
AUTH_USER_MODEL = "accounts.User"
LOGIN_URL = "/lab/login/"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "lab" / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

DATABASES = {
    "default": dj_database_url.parse(
        env_secret("DATABASE_URL", f"sqlite:///{VAR_DIR / 'lab.sqlite3'}"),
        # A connection per request cost more than the whole quote it served (PostgreSQL starts a backend
        # process for each; bench/intake/README.md): each process keeps its connection, and checks it with
        # one `SELECT 1` before its first use in a request or task, so one the server dropped (a restart,
        # an idle timeout) is replaced instead of failing that request.
        conn_max_age=envint("DATABASE_CONN_MAX_AGE", 60),
        conn_health_checks=True,
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    if DEMO_SECRETS:
        Path(DATABASES["default"]["NAME"]).parent.mkdir(parents=True, exist_ok=True)
    # WAL + a busy timeout let the web process, the worker and beat share one SQLite file.
    DATABASES["default"]["OPTIONS"] = {
        "timeout": 20,
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        "transaction_mode": "IMMEDIATE",
    }
# A process frozen inside a transaction (a VM paused, a host swapping, SIGSTOP) holds its locks for as long
# as it is frozen, and every other process that needs those rows waits behind it: the reconciler too, which
# is what would take its work over. PostgreSQL ends such a session once it has sat idle inside a transaction
# this long (a gap between two statements, never a statement's own time), so its locks go, and the frozen
# process, when it wakes, finds its connection gone and fails its task as after a restart. 0 leaves it to
# the server's setting (e.g. behind a PgBouncer that refuses the `options` startup parameter).
DATABASE_IDLE_IN_TRANSACTION_SECONDS = envint("DATABASE_IDLE_IN_TRANSACTION_SECONDS", 60)
# The search_path is pinned with it to public alone, which PostgreSQL searches after pg_catalog (unlisted, it
# comes first; listed first, tables would be made in it): a role's search_path with pg_catalog last (ALTER
# ROLE ... SET search_path = public, pg_catalog) let a public.clock_timestamp() shadow the clock records are
# timed on; startup options win over the role's settings. With 0 (a PgBouncer that refuses `options`) no
# option is sent: the app's SQL names its clock in pg_catalog, and both audit verifiers name a record timed
# ahead.
if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql" and DATABASE_IDLE_IN_TRANSACTION_SECONDS:
    _options = DATABASES["default"].setdefault("OPTIONS", {})
    _options["options"] = (
        f"{_options.get('options', '')} "
        f"-c idle_in_transaction_session_timeout={DATABASE_IDLE_IN_TRANSACTION_SECONDS * 1000}"
        " -c search_path=public"
    ).strip()
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    # The lab's User has one `full_name` (no first_name / last_name, which Django compares by default).
    {
        "NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator",
        "OPTIONS": {"user_attributes": ("email", "full_name")},
    },
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator", "OPTIONS": {"min_length": 10}},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
PASSWORD_HASHERS = envlist("PASSWORD_HASHERS") or [
    "django.contrib.auth.hashers.PBKDF2PasswordHasher",
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"


def _lab_time_zone() -> str:
    """LAB_TIME_ZONE: the lab's own IANA time zone. People's shifts are wall-clock times in it and the
    auditors' review day runs midnight to midnight in it, and beat's crontab (lab/celery.py) follows it.
    Django's TIME_ZONE stays UTC: pages, their "(UTC)" labels, the supervisor's hourly and daily counts and
    logs read UTC."""
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    value = os.environ.get("LAB_TIME_ZONE", "UTC").strip()
    try:
        ZoneInfo(value)
    except (ValueError, ZoneInfoNotFoundError):
        raise ImproperlyConfigured(
            f"LAB_TIME_ZONE={value!r} is not an IANA time zone name (such as Europe/Berlin or "
            "America/Chicago; the names are case-sensitive)."
        ) from None
    return value


LAB_TIME_ZONE = _lab_time_zone()
USE_I18N = False
USE_TZ = True

STATIC_URL = "/static/"
STATIC_ROOT = VAR_DIR / "static"
MEDIA_ROOT = Path(os.environ.get("LAB_STORAGE_DIR", VAR_DIR / "storage"))

# --- Cookies and staff sessions (policy: shared terminals, only the cookies needed) -------------
# Sessions in the database under a keyed hash of their key: a key read from the table opens nothing.
SESSION_ENGINE = "lab.accounts.sessions"
SESSION_COOKIE_AGE = envint("STAFF_SESSION_IDLE_SECONDS", 15 * 60)
SESSION_SAVE_EVERY_REQUEST = True  # idle timeout: every request pushes the expiry forward
SESSION_EXPIRE_AT_BROWSER_CLOSE = True
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
CSRF_COOKIE_SAMESITE = "Lax"
CSRF_FAILURE_VIEW = "lab.staff.views.auth.csrf_failure_view"  # the lab's look; problem+json under /api/
SECURE_COOKIES = envbool("SECURE_COOKIES", "false")
SESSION_COOKIE_SECURE = SECURE_COOKIES
CSRF_COOKIE_SECURE = SECURE_COOKIES
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"
SECURE_REFERRER_POLICY = "same-origin"

# --- Proxies and HTTPS (README: Running in production) ------------------------------------------
# The reverse proxies in front of the web processes (IPs or CIDRs). Only they may say who the client is
# (X-Forwarded-For), that the request came over HTTPS (X-Forwarded-Proto) and what its X-Request-ID is;
# lab/lib/client_ip.py gives throttles, audit records and logs the address. Empty: clients connect directly.
TRUSTED_PROXIES = envlist("TRUSTED_PROXIES")
for _proxy in TRUSTED_PROXIES:
    try:
        ipaddress.ip_network(_proxy, strict=False)
    except ValueError:
        raise ImproperlyConfigured(f"TRUSTED_PROXIES: {_proxy!r} is not an IP address or network.") from None
if TRUSTED_PROXIES:
    # Safe because lab.lib.middleware drops X-Forwarded-Proto from every peer that is not a trusted proxy.
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_SSL_REDIRECT = envbool("SECURE_SSL_REDIRECT", "false")
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$"]  # load balancers probe over plain HTTP
SECURE_HSTS_SECONDS = envint("SECURE_HSTS_SECONDS", 0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = envbool("SECURE_HSTS_INCLUDE_SUBDOMAINS", "false")
SECURE_HSTS_PRELOAD = envbool("SECURE_HSTS_PRELOAD", "false")
SILENCED_SYSTEM_CHECKS = [
    # "HSTS preload is off": joining browsers' preload list binds the whole domain and every subdomain for
    # months, a decision for the domain's owner, not a default; SECURE_HSTS_PRELOAD=true opts in.
    "security.W021",
]

# --- REST API ----------------------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "api.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    # DRF's three parsers, JSON's answering a body nested too deeply as a 400 (api/parsers.py).
    "DEFAULT_PARSER_CLASSES": [
        "api.parsers.JSONParser",
        "rest_framework.parsers.FormParser",
        "rest_framework.parsers.MultiPartParser",
    ],
    "DEFAULT_PAGINATION_CLASS": "api.pagination.Pagination",
    "PAGE_SIZE": 20,
    "DEFAULT_FILTER_BACKENDS": ["django_filters.rest_framework.DjangoFilterBackend"],
    "DEFAULT_SCHEMA_CLASS": "api.schema.ProblemAutoSchema",
    # An `Accept` no renderer matches is answered in the view's own type, not refused 406 with the view not
    # run (a generated client asks a 204 delete for problem+json): api/negotiation.py.
    "DEFAULT_CONTENT_NEGOTIATION_CLASS": "api.negotiation.FirstRendererFallback",
    "EXCEPTION_HANDLER": "api.errors.problem_exception_handler",
    # Our throttles key on lab.lib.client_ip (api/throttle_rates.py); 0 keeps any stock DRF throttle on the
    # peer address instead of the client-written X-Forwarded-For it would otherwise use.
    "NUM_PROXIES": 0,
    "DEFAULT_THROTTLE_RATES": {
        "anon": os.environ.get("API_ANON_THROTTLE", "120/min"),
        "registration": os.environ.get("API_REGISTRATION_THROTTLE", "20/hour"),
        "sign_in": os.environ.get("API_SIGN_IN_THROTTLE", "120/hour"),
        "email_changes": os.environ.get("API_EMAIL_CHANGE_ADDRESS_THROTTLE", "20/hour"),
        "proofs": os.environ.get("API_PROOF_THROTTLE", "30/min"),
        "account_changes": os.environ.get("API_ACCOUNT_CHANGE_THROTTLE", "30/hour"),
        # Per signed-in customer (api/throttles.py _PerCustomer): AnonThrottle counts nobody signed in.
        "customer_uploads": os.environ.get("API_CUSTOMER_UPLOAD_THROTTLE", "30/min"),
        "customer_quotes": os.environ.get("API_CUSTOMER_QUOTE_THROTTLE", "60/min"),
        "customer_orders": os.environ.get("API_CUSTOMER_ORDER_THROTTLE", "10/hour"),
        "customer_order_requests": os.environ.get("API_CUSTOMER_ORDER_REQUEST_THROTTLE", "120/hour"),
        "customer_order_changes": os.environ.get("API_CUSTOMER_ORDER_CHANGE_THROTTLE", "30/hour"),
        "customer_reads": os.environ.get("API_CUSTOMER_READ_THROTTLE", "60/min"),
        "customer_redeliveries": os.environ.get("API_CUSTOMER_REDELIVERY_THROTTLE", "60/hour"),
        "webhook_endpoint_changes": os.environ.get("API_WEBHOOK_ENDPOINT_CHANGE_THROTTLE", "30/hour"),
        # Guest orders per e-mail address (each mails it), from any client address.
        "guest_order_emails": os.environ.get("API_GUEST_ORDER_EMAIL_THROTTLE", "5/hour"),
    },
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"]
    + (["rest_framework.renderers.BrowsableAPIRenderer"] if DEBUG else []),
    "TEST_REQUEST_DEFAULT_FORMAT": "json",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Print Lab API",
    "DESCRIPTION": "Customer API of the print lab: accounts, photos, quotes, orders, payments.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SCHEMA_PATH_PREFIX": "/api/v1",
    "COMPONENT_SPLIT_REQUEST": True,
    # Swagger UI from drf-spectacular-sidecar, served by the app (api/schema.py DocsView), never a CDN.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "ENUM_NAME_OVERRIDES": {
        "WebhookDeliveryStatusEnum": "lab.notify.states.DeliveryStatus",
        "OrderStatusEnum": "lab.orders.states.OrderStatus",  # "status" is also an asset's and a payment's
    },
}


def _check_one_redis_broker() -> None:
    """Several broker URLs (kombu's failover list, ';'-separated) are refused: kombu takes a failover URL's
    scheme as its transport when it switches to it, so after the first failover a worker ran kombu's own
    Redis QoS instead of the lab's (lab/lib/broker.py), and one failed ack stopped it for good. Before, such
    a URL stopped the process with a bare ValueError from the cache's database number."""
    broker = env_secret("CELERY_BROKER_URL")
    if broker.startswith(("redis://", "rediss://")) and ";" in broker:
        raise ImproperlyConfigured(
            "CELERY_BROKER_URL names several Redis servers (';'): the lab takes one. Put one address in "
            "front of them (a Redis that fails over behind one name, or a TCP proxy)."
        )


_check_one_redis_broker()


def _cache_url() -> str:
    """CACHE_URL, else the broker's Redis with the next database number (a cache flush never empties the
    broker's queues), else nothing: local memory, for the embedded single-process setup only."""
    explicit = env_secret("CACHE_URL")
    broker = env_secret("CELERY_BROKER_URL")
    if explicit or not broker.startswith(("redis://", "rediss://")):
        return explicit
    from urllib.parse import urlsplit

    parts = urlsplit(broker)
    broker_db = int(parts.path.strip("/") or "0")
    return parts._replace(path=f"/{broker_db + 1 if broker_db < 15 else broker_db - 1}").geturl()


# Each connect to Redis and each wait for its answer, for the shared cache and for web processes' sends to the
# broker (lab/wsgi.py): a Redis that takes connections and does not answer (stalled, swapping, frozen) fails
# the call in seconds instead of holding the request for good.
REDIS_TIMEOUT_SECONDS = envint("REDIS_TIMEOUT_SECONDS", 2)
# Throttles and the sign-in limits count here: with Redis every web process shares the counts.
CACHES = {
    "default": (
        {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": _cache_url(),
            "OPTIONS": {
                "socket_timeout": REDIS_TIMEOUT_SECONDS,
                "socket_connect_timeout": REDIS_TIMEOUT_SECONDS,
                # JSON and bare integers, never pickle: whoever can write to this Redis must not run code
                # here (Django's own serializer unpickles what it reads).
                "serializer": "lab.lib.cache.JsonCacheSerializer",
            },
        }
        if _cache_url()
        else {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}
    )
}
# Failed sign-ins (API token exchange, staff login) per account and per address within the window; past
# either limit, sign-ins are refused (429) for one window. See lab/accounts/signin.py.
SIGNIN_ACCOUNT_FAILURES = envint("SIGNIN_ACCOUNT_FAILURES", 5)
SIGNIN_ADDRESS_FAILURES = envint("SIGNIN_ADDRESS_FAILURES", 20)
SIGNIN_WINDOW_SECONDS = envint("SIGNIN_WINDOW_SECONDS", 900)
# How long the token mailed to a new address (My Account's e-mail change) confirms it.
LAB_EMAIL_CONFIRM_HOURS = envint("LAB_EMAIL_CONFIRM_HOURS", 24)
API_TOKENS_PER_USER = envint("API_TOKENS_PER_USER", 20)  # issuing one more revokes the least recently used

# --- Photos ------------------------------------------------------------------------------------
# Master keys: "id:base64key" entries, comma separated; the first one wraps new data keys, the
# others still unwrap old ones until `manage.py rotate_master_key` re-wraps them. The demo file holds one
# bare key, named k1.
_master_keys = env_secret("LAB_MASTER_KEY") or (
    "k1:"
    + required_secret(
        "LAB_MASTER_KEY",
        demo_file="master_key",
        make=lambda: base64.urlsafe_b64encode(secrets.token_bytes(32)).decode(),
        how=f"{_PYTHON} 'import base64, secrets; print(\"k1:\" + {_RANDOM_32_BYTES})'",
    )
)
LAB_MASTER_KEYS = [part.strip() for part in _master_keys.split(",") if part.strip()]
ASSET_MAX_BYTES = envint("ASSET_MAX_BYTES", 100 * 1024 * 1024)
ASSET_MAX_PIXELS = envint("ASSET_MAX_PIXELS", 200_000_000)
# Largest ICC profile a photo may embed (422 `icc_profile_too_large`): prepress CMYK profiles are 1-3 MB.
ASSET_MAX_ICC_PROFILE_BYTES = envint("ASSET_MAX_ICC_PROFILE_BYTES", 4 * 1024 * 1024)
ASSET_FETCH_TIMEOUT_SECONDS = envint("ASSET_FETCH_TIMEOUT_SECONDS", 60)  # the whole fetch; soft limit 100 s
ASSET_FETCH_ALLOW_PRIVATE = envbool("ASSET_FETCH_ALLOW_PRIVATE", "false")
ASSET_FETCH_ALLOW_HTTP = envbool("ASSET_FETCH_ALLOW_HTTP", "false")
URL_CHECK_TIMEOUT_SECONDS = float(os.environ.get("URL_CHECK_TIMEOUT_SECONDS", "3"))  # web side: the lookup
# Interval of the sweep that sends a URL photo's fetch again when its message was lost (and the least age of
# the last message sent before it is sent again).
ASSET_FETCH_SWEEP_SECONDS = envint("ASSET_FETCH_SWEEP_SECONDS", 60)
# Free space (MiB) the photo store keeps for everything but new photos: below it an upload is refused (507
# `storage_full`, lab/orders/photos.py), while rasters of paid orders, the readiness probe and the rest keep
# writing into it. 0: no reserve.
LAB_STORAGE_RESERVE_MB = envint("LAB_STORAGE_RESERVE_MB", 2048)
# Bytes of photos one signed-in customer, or one client network (an IPv4 /24, an IPv6 /64) for uploads of
# nobody signed in, may upload in a day (a window from its first accepted upload): past it 429
# `upload_budget_exhausted` (api/upload_throttle.py UploadByteBudget). 0: no budget.
API_UPLOAD_BYTES_PER_DAY = envint("API_UPLOAD_BYTES_PER_DAY", 2 * 1024 * 1024 * 1024)
DATA_UPLOAD_MAX_MEMORY_SIZE = 10 * 1024 * 1024
# The only handler keeps a photo upload in the web worker's memory until it is encrypted: Django's default
# writes a body over FILE_UPLOAD_MAX_MEMORY_SIZE to a plaintext temporary file, which a killed worker leaves
# behind. It drops the file of a larger body, so its limit is above the largest api/middleware.py lets
# through (ASSET_MAX_BYTES plus 64 KiB; a larger one is answered 413 before it is read).
FILE_UPLOAD_HANDLERS = ["django.core.files.uploadhandler.MemoryFileUploadHandler"]
FILE_UPLOAD_MAX_MEMORY_SIZE = ASSET_MAX_BYTES + 1024 * 1024

# --- Payments ----------------------------------------------------------------------------------
STRIPE_SECRET_KEY = env_secret("STRIPE_SECRET_KEY")
STRIPE_PUBLISHABLE_KEY = os.environ.get("STRIPE_PUBLISHABLE_KEY", "")
STRIPE_WEBHOOK_SECRET = env_secret("STRIPE_WEBHOOK_SECRET")
STRIPE_API_BASE = os.environ.get("STRIPE_API_BASE", "")  # e.g. http://127.0.0.1:8420 for localstripe
# Each Stripe call: connecting, and then each wait for its answer (the SDK retries twice); under gunicorn's
# worker timeout (gunicorn.conf.py) with room to answer 502 payment_provider_unavailable.
STRIPE_TIMEOUT_SECONDS = envint("STRIPE_TIMEOUT_SECONDS", 10)
STRIPE_WEBHOOK_TOLERANCE_SECONDS = envint("STRIPE_WEBHOOK_TOLERANCE_SECONDS", 300)
LAB_CURRENCY = os.environ.get("LAB_CURRENCY", "usd")


# The currencies whose 4.99 and 14.99 (the defaults, in hundredths) are plausible shipping prices: a lab in
# any other currency sets both prices.
SHIPPING_DEFAULTS_CURRENCIES = frozenset({"usd", "eur", "gbp", "cad", "aud", "nzd", "chf", "sgd"})


def _shipping_price_minor(name: str, value: str, usd_default: int) -> int:
    """A shipping price in minor units of LAB_CURRENCY (lab/orders/pricing.py). The defaults are 4.99 and
    14.99 in a currency of hundredths worth about a US dollar (SHIPPING_DEFAULTS_CURRENCIES): a lab in any
    other currency sets both, for 499 minor units are HUF 4.99, KRW 499 or KWD 0.499 (lab/lib/currency.py
    has each currency's minor-unit digits). Before, they were used in every currency."""
    if not value.strip():
        if LAB_CURRENCY.strip().lower() in SHIPPING_DEFAULTS_CURRENCIES:
            return usd_default
        digits = minor_unit_digits(LAB_CURRENCY)
        raise ImproperlyConfigured(
            f"LAB_CURRENCY={LAB_CURRENCY!r}: set LAB_SHIPPING_STANDARD_MINOR and LAB_SHIPPING_EXPRESS_MINOR, "
            f"the shipping prices in its minor units ({digits} decimal digits: 1 {LAB_CURRENCY.upper()} is "
            f"{10**digits}); the defaults (499, 1499) are for USD, EUR, GBP, CAD, AUD, NZD, CHF and SGD. "
            f"{name} is not set."
        )
    try:
        price = int(value)
    except ValueError:
        price = -1
    if price < 0:
        raise ImproperlyConfigured(f"{name}={value!r} is not a whole number of minor units (0 or more).")
    return price


LAB_SHIPPING_STANDARD_MINOR = _shipping_price_minor(
    "LAB_SHIPPING_STANDARD_MINOR", os.environ.get("LAB_SHIPPING_STANDARD_MINOR", ""), 499
)
LAB_SHIPPING_EXPRESS_MINOR = _shipping_price_minor(
    "LAB_SHIPPING_EXPRESS_MINOR", os.environ.get("LAB_SHIPPING_EXPRESS_MINOR", ""), 1499
)

# --- Celery ------------------------------------------------------------------------------------
_broker_dir = VAR_DIR / "broker"
CELERY_BROKER_URL = env_secret("CELERY_BROKER_URL", "filesystem://")
# The time limit of a task that declares none (every task of workers/ declares its own).
CELERY_TASK_TIME_LIMIT = envint("CELERY_TASK_TIME_LIMIT", 300)
# The longest time limit a task of workers/ declares (privacy.retention_purge); tests/config pins it.
CELERY_TASK_TIME_LIMIT_LONGEST = 900
CELERY_BROKER_TRANSPORT_OPTIONS: dict[str, object] = (
    {
        "data_folder_in": str(_broker_dir / "queue"),
        "data_folder_out": str(_broker_dir / "queue"),
        "control_folder": str(_broker_dir / "control"),
        "store_processed": False,
    }
    if CELERY_BROKER_URL.startswith("filesystem")
    # Redis hands a message taken but not acknowledged out again after this: it outlasts an acks_late task
    # running to its limit and a message prefetched behind the longest task, whatever CELERY_TASK_TIME_LIMIT
    # says (every task declares its own limit: lowering that setting once shortened this below them).
    else {"visibility_timeout": max(CELERY_TASK_TIME_LIMIT * 4, CELERY_TASK_TIME_LIMIT_LONGEST + 300)}
)
if CELERY_BROKER_URL.startswith("filesystem") and DEMO_SECRETS:
    # The embedded broker's folders; a production host uses Redis and gets nothing written at import.
    for _sub in ("queue", "control"):
        (_broker_dir / _sub).mkdir(parents=True, exist_ok=True)
CELERY_TASK_ALWAYS_EAGER = False
PRINT_HOST = os.environ.get("PRINT_HOST", "")

# --- Printers and production --------------------------------------------------------------------
PRODUCTION_POLL_SECONDS = float(os.environ.get("PRODUCTION_POLL_SECONDS", "10"))
PRODUCTION_CLAIM_LEASE_SECONDS = envint("PRODUCTION_CLAIM_LEASE_SECONDS", 600)
PRODUCTION_RETRY_BASE_SECONDS = float(os.environ.get("PRODUCTION_RETRY_BASE_SECONDS", "5"))
PRODUCTION_RETRY_CAP_SECONDS = float(os.environ.get("PRODUCTION_RETRY_CAP_SECONDS", "600"))
PRODUCTION_MAX_SUBMIT_ATTEMPTS = envint("PRODUCTION_MAX_SUBMIT_ATTEMPTS", 10)
# A raster whose worker was lost this many times in a row (a photo that crashes or exhausts it) fails the job.
PRODUCTION_MAX_RASTER_TAKEOVERS = envint("PRODUCTION_MAX_RASTER_TAKEOVERS", 3)
# A job held at the printer (never started) longer than this is cancelled there and failed for a technician.
PRODUCTION_STUCK_JOB_SECONDS = envint("PRODUCTION_STUCK_JOB_SECONDS", 1800)
# How long a hand-off (paid -> released, queued -> raster message) may take before the reconciler redoes it.
PRODUCTION_HANDOFF_GRACE_SECONDS = float(
    os.environ.get("PRODUCTION_HANDOFF_GRACE_SECONDS", str(PRODUCTION_POLL_SECONDS * 2))
)
CUPS_SERVER = os.environ.get("CUPS_SERVER", "")  # host:port; empty = the system default
# The printer-events listener (`manage.py printer_events`) asks each cupsd for job events this often: cupsd
# answers Get-Notifications at once (no long poll), so this is the most an event waits before it is read.
PRINTER_EVENTS_PULL_SECONDS = float(os.environ.get("PRINTER_EVENTS_PULL_SECONDS", "0.25"))
HOTFOLDER_ROOT = Path(os.environ.get("HOTFOLDER_ROOT", VAR_DIR / "spool"))
# How often the documents printers keep of finished jobs (CUPS' spool, a hot folder's done/) are erased.
PRINTER_DOCUMENTS_DISCARD_SECONDS = envint("PRINTER_DOCUMENTS_DISCARD_SECONDS", 300)

# --- Retention (privacy policy: photos kept only as long as strictly necessary) --------------------
RETENTION_SHIPPED_DAYS = envint("RETENTION_SHIPPED_DAYS", 30)
RETENTION_RASTER_DAYS = envint("RETENTION_RASTER_DAYS", 7)
RETENTION_UNPAID_DAYS = envint("RETENTION_UNPAID_DAYS", 7)
RETENTION_UNUSED_DAYS = envint("RETENTION_UNUSED_DAYS", 7)
RETENTION_BATCH = envint("RETENTION_BATCH", 500)
RETENTION_SWEEP_SECONDS = envint("RETENTION_SWEEP_SECONDS", 3600)
# The erasure log: every committed erasure (its kind, the account's public_id or the guest order's ref, its
# time) is also appended here, outside the database, so `manage.py erasures_reapply` can erase again whom a
# restore from a backup brought back (lab/customer_data/erasure_log.py). A path or file:///path; put it on a
# disk every web host appends to and a database restore does not touch; the default is for the embedded setup.
LAB_ERASURE_LOG = os.environ.get("LAB_ERASURE_LOG", str(VAR_DIR / "erasures.log"))
# Supervisor alerts (lab.production.alerts): each e-mailed once to supervisors, shown on /lab/supervisor/.
ALERT_CHECK_SECONDS = envint("ALERT_CHECK_SECONDS", 300)
ALERT_ORDER_AT_RISK_HOURS = envint("ALERT_ORDER_AT_RISK_HOURS", 6)  # open order promised within this or past
ALERT_PRINTER_ERROR_MINUTES = envint("ALERT_PRINTER_ERROR_MINUTES", 15)  # printer in error/offline this long
ALERT_QUEUE_DEPTH = envint("ALERT_QUEUE_DEPTH", 200)  # jobs waiting to print, at least this many...
ALERT_QUEUE_WINDOW_MINUTES = envint("ALERT_QUEUE_WINDOW_MINUTES", 60)  # ...and more came in than printed here
# A scheduled sweep that has not succeeded for this many of its intervals plus the grace is overdue: shown on
# the board, /metrics and `manage.py sweeps_check` (lab.production.sweeps).
SWEEP_OVERDUE_FACTOR = envint("SWEEP_OVERDUE_FACTOR", 2)
SWEEP_OVERDUE_GRACE_SECONDS = envint("SWEEP_OVERDUE_GRACE_SECONDS", 60)
# How often beat looks for order events whose e-mail/webhook message was lost (and how old they must be).
NOTIFY_SWEEP_SECONDS = envint("NOTIFY_SWEEP_SECONDS", 60)

# --- Audit ---------------------------------------------------------------------------------------
AUDIT_GRANT_SECONDS = envint("AUDIT_GRANT_SECONDS", 600)
# A new grant by the same person for the same photo and context this soon after the last one expired is a
# renewal, flagged for the auditors.
AUDIT_GRANT_RENEWAL_SECONDS = envint("AUDIT_GRANT_RENEWAL_SECONDS", 600)
# A maintenance ticket may name jobs active on its printer or printed on it within this many hours.
AUDIT_MAINTENANCE_WINDOW_HOURS = envint("AUDIT_MAINTENANCE_WINDOW_HOURS", 4)
# A shipped order's slip (name and address) is served at the packing station this long after shipping.
PACKING_SHIPPED_SLIP_HOURS = envint("PACKING_SHIPPED_SLIP_HOURS", 24)
AUDIT_BURST_ORDERS = envint("AUDIT_BURST_ORDERS", 10)  # one person viewing this many orders ...
AUDIT_BURST_MINUTES = envint("AUDIT_BURST_MINUTES", 15)  # ... within this window is flagged
AUDIT_REPEAT_VIEWS = envint("AUDIT_REPEAT_VIEWS", 5)  # repeated views of one order ...
AUDIT_REPEAT_HOURS = envint("AUDIT_REPEAT_HOURS", 24)  # ... within this window are flagged
AUDIT_REVIEW_SAMPLE_SIZE = envint("AUDIT_REVIEW_SAMPLE_SIZE", 20)  # daily random sample of views to review
AUDIT_CHECKPOINT_SECONDS = envint("AUDIT_CHECKPOINT_SECONDS", 3600)
# Ed25519 private key (PEM or base64 raw) that signs checkpoints; kept outside the database.
AUDIT_SIGNING_KEY = required_secret(
    "AUDIT_SIGNING_KEY",
    demo_file="audit_signing_key",
    make=lambda: base64.b64encode(secrets.token_bytes(32)).decode(),
    how=f"{_PYTHON} 'import base64, secrets; print({_RANDOM_32_BYTES})'",
)
# HMAC-SHA256 key (base64, >= 32 bytes) that authenticates every audit record; never in the database.
# AUDIT_RECORD_KEY, or a file named by AUDIT_RECORD_KEY_FILE (a mounted secret); generated only in demo mode.
AUDIT_RECORD_KEY = required_secret(
    "AUDIT_RECORD_KEY",
    demo_file="audit_record_key",
    make=lambda: base64.b64encode(secrets.token_bytes(32)).decode(),
    how=f"{_PYTHON} 'import base64, secrets; print({_RANDOM_32_BYTES})'",
)
# Where every signed checkpoint is also appended, outside the database (append-only JSONL, fsync'd). Point
# it at another disk or host; the default under var/ is for the embedded setup only.
AUDIT_WITNESS = os.environ.get("AUDIT_WITNESS", (VAR_DIR / "audit-witness" / "checkpoints.jsonl").as_uri())
# Whether this process's worker signs beat's checkpoints: false in every reference unit but printlab-audit's,
# so a checkpoint task sent to another queue (forged) signs nothing and raises no alarm (workers/tasks.py).
LAB_AUDIT_SIGNER = envbool("LAB_AUDIT_SIGNER", "true")
AUDIT_WITNESS_EMAILS = envlist("AUDIT_WITNESS_EMAILS")  # each checkpoint is mailed to these auditors
# Public keys (base64 or PEM, comma-separated) of signing keys a rotation retired: the checkpoints they signed
# stay in the database and every export, and are checked with the key their key_id names.
AUDIT_RETIRED_PUBLIC_KEYS = envlist("AUDIT_RETIRED_PUBLIC_KEYS")
# Who is told when the signer refuses to sign (the chain failed its check); default: the witness addresses.
AUDIT_ALERT_EMAILS = envlist("AUDIT_ALERT_EMAILS") or AUDIT_WITNESS_EMAILS

# --- Customer webhooks -------------------------------------------------------------------------
WEBHOOK_ALLOW_PRIVATE = envbool("WEBHOOK_ALLOW_PRIVATE", "false")
WEBHOOK_ALLOW_HTTP = envbool("WEBHOOK_ALLOW_HTTP", "false")

# --- E-mail ------------------------------------------------------------------------------------
# The file backend keeps every message in plaintext under EMAIL_FILE_PATH: shipping e-mails with the address,
# carrier and tracking number, privacy receipts with their bearer links. It is demo mode's default
# (LAB_DEMO_SECRETS: scripts/run, the test command), where the retention sweep deletes the files after a week
# and an erasure the erased customer's messages (lab/customer_data/mail_files.py). Outside demo mode
# EMAIL_BACKEND must be set, and the file backend is refused: before, it was the default everywhere, and every
# message was kept on disk for good, an erasure's customer's too.
_FILE_EMAIL_BACKEND = "django.core.mail.backends.filebased.EmailBackend"
# The console backend writes each message to stdout, into the journal with the logs: no personal data in logs.
_CONSOLE_EMAIL_BACKEND = "django.core.mail.backends.console.EmailBackend"


def _email_backend() -> str:
    value = os.environ.get("EMAIL_BACKEND", "").strip()
    if DEMO_SECRETS or _TYPE_CHECKING_ONLY:
        return value or _FILE_EMAIL_BACKEND
    if not value:
        raise ImproperlyConfigured(
            "EMAIL_BACKEND is not set. Set EMAIL_BACKEND=django.core.mail.backends.smtp.EmailBackend (with "
            "EMAIL_HOST and EMAIL_PORT) or another backend that hands messages on. On a development machine, "
            f"LAB_DEMO_SECRETS=true writes them to files under {VAR_DIR / 'mail'}."
        )
    if value == _FILE_EMAIL_BACKEND:
        raise ImproperlyConfigured(
            f"EMAIL_BACKEND={value} keeps every customer's e-mail in plaintext on disk: it is for the demo "
            "only (LAB_DEMO_SECRETS=true). Set EMAIL_BACKEND=django.core.mail.backends.smtp.EmailBackend "
            "(with EMAIL_HOST and EMAIL_PORT) or another backend that hands messages on."
        )
    if value == _CONSOLE_EMAIL_BACKEND:
        raise ImproperlyConfigured(
            f"EMAIL_BACKEND={value} writes every customer's e-mail (addresses, tracking numbers, receipt "
            "links) to the process's output, which the journal keeps: it is for the demo only "
            "(LAB_DEMO_SECRETS=true). Set EMAIL_BACKEND=django.core.mail.backends.smtp.EmailBackend (with "
            "EMAIL_HOST and EMAIL_PORT) or another backend that hands messages on."
        )
    return value


EMAIL_BACKEND = _email_backend()
# Each connect to the mail server and each wait for its answer (Django's default: none). A mail server that
# takes the connection and says nothing held each e-mail task to its time limit, and the default queue
# (releases, polls) behind it; now the send fails in seconds and is retried like a refused connection.
EMAIL_TIMEOUT = envint("EMAIL_TIMEOUT", 10)
EMAIL_FILE_PATH = VAR_DIR / "mail"
DEFAULT_FROM_EMAIL = os.environ.get("DEFAULT_FROM_EMAIL", "orders@printlab.example")
EMAIL_HOST = os.environ.get("EMAIL_HOST", "localhost")
EMAIL_PORT = envint("EMAIL_PORT", 25)
# STARTTLS (usually port 587) or implicit TLS (usually 465), and the login the mail server asks for.
EMAIL_USE_TLS = envbool("EMAIL_USE_TLS", "false")
EMAIL_USE_SSL = envbool("EMAIL_USE_SSL", "false")
EMAIL_HOST_USER = os.environ.get("EMAIL_HOST_USER", "")
EMAIL_HOST_PASSWORD = env_secret("EMAIL_HOST_PASSWORD")
_SMTP_EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"


def _is_loopback(host: str) -> bool:
    if host.strip().lower().rstrip(".") == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip().strip("[]")).is_loopback
    except ValueError:
        return False


def _check_email_transport() -> None:
    """The messages carry receipt links with their bearer token, addresses and tracking numbers: outside demo
    mode they may cross the network to an SMTP server only encrypted, unless EMAIL_ALLOW_PLAINTEXT says so.
    Before, nothing read EMAIL_USE_TLS, and the documented deployment sent them to port 25 in cleartext."""
    if EMAIL_USE_TLS and EMAIL_USE_SSL:
        raise ImproperlyConfigured(
            "EMAIL_USE_TLS and EMAIL_USE_SSL are both true: set one, EMAIL_USE_TLS=true for STARTTLS "
            "(usually port 587) or EMAIL_USE_SSL=true for implicit TLS (usually port 465)."
        )
    allow_plaintext = envbool("EMAIL_ALLOW_PLAINTEXT", "false")
    if DEMO_SECRETS or _TYPE_CHECKING_ONLY or allow_plaintext or EMAIL_USE_TLS or EMAIL_USE_SSL:
        return
    if EMAIL_BACKEND == _SMTP_EMAIL_BACKEND and not _is_loopback(EMAIL_HOST):
        raise ImproperlyConfigured(
            f"EMAIL_HOST={EMAIL_HOST!r} is another machine and neither EMAIL_USE_TLS nor EMAIL_USE_SSL is "
            "true: every e-mail (receipt links with their token, addresses, tracking numbers) would cross "
            "the network in cleartext. Set EMAIL_USE_TLS=true (STARTTLS, usually EMAIL_PORT=587) or "
            "EMAIL_USE_SSL=true (usually EMAIL_PORT=465); only if that network is trusted, "
            "EMAIL_ALLOW_PLAINTEXT=true."
        )


_check_email_transport()

# --- Health and metrics (README: Monitoring) -----------------------------------------------------
# /metrics answers only a request bearing this token (404 while it is unset).
METRICS_TOKEN = env_secret("METRICS_TOKEN")
READYZ_CHECK_TIMEOUT_SECONDS = float(os.environ.get("READYZ_CHECK_TIMEOUT_SECONDS", "1"))
# A worker serves its task metrics here (prometheus_client's server); 0: no metrics port.
WORKER_METRICS_PORT = envint("WORKER_METRICS_PORT", 0)
WORKER_METRICS_ADDRESS = os.environ.get("WORKER_METRICS_ADDRESS", "127.0.0.1")

# --- Logging: ids only, never personal data (STYLE rule 14) -------------------------------------
LOG_LEVEL = os.environ.get("LOG_LEVEL", "INFO")
LOG_FORMAT = os.environ.get("LOG_FORMAT", "plain").strip().lower()
if LOG_FORMAT not in {"plain", "json"}:
    raise ImproperlyConfigured(f"LOG_FORMAT={LOG_FORMAT!r}: use plain or json.")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s [%(request_id)s %(client_ip)s] %(message)s"},
        "json": {"()": "lab.lib.log_format.JsonFormatter"},
    },
    "filters": {"request": {"()": "lab.lib.middleware.RequestContextFilter"}},
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": LOG_FORMAT, "filters": ["request"]}
    },
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    # Third-party clients log request/response bodies at DEBUG/INFO; keep them out of the lab's logs.
    "loggers": {
        "django.db.backends": {"level": "WARNING"},
        "stripe": {"level": "WARNING"},
        "urllib3": {"level": "WARNING"},
        # libvips logs every operation's cache and thread set-up at INFO: most of a worker's log otherwise.
        "pyvips": {"level": "WARNING"},
        # Pillow's TIFF reader and writer log every EXIF tag's value at DEBUG (intake, the gate): the photo's
        # Artist, ImageDescription, Copyright, often the customer's name or address.
        "PIL": {"level": "WARNING"},
    },
}
