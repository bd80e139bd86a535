"""The one settings module of the print lab.

Every value comes from the environment with an embedded default that runs on one machine
(SQLite and a filesystem broker under var/); README.md lists every variable.
"""

from __future__ import annotations

import base64
import os
import secrets
from pathlib import Path

import dj_database_url

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(os.environ.get("LAB_VAR_DIR", BASE_DIR / "var"))
VAR_DIR.mkdir(parents=True, exist_ok=True)


def envbool(name: str, default: str) -> bool:
    return os.environ.get(name, default).lower() in ("1", "true", "yes", "on")


def envint(name: str, default: int) -> int:
    return int(os.environ.get(name, str(default)))


def envlist(name: str, default: str = "") -> list[str]:
    return [part.strip() for part in os.environ.get(name, default).split(",") if part.strip()]


def _persistent_secret(name: str, filename: str, make: str) -> str:
    """Use the environment value; on a dev machine, generate one once and keep it under var/.

    Production sets these variables; a generated key on disk keeps the embedded setup working
    across restarts without ever shipping a key in the repository.
    """
    value = os.environ.get(name)
    if value:
        return value
    path = VAR_DIR / filename
    if not path.exists():
        path.write_text(make)
        path.chmod(0o600)
    return path.read_text().strip()


DEBUG = envbool("DEBUG", "false")
SECRET_KEY = _persistent_secret("SECRET_KEY", "secret_key", secrets.token_urlsafe(50))
ALLOWED_HOSTS = envlist("ALLOWED_HOSTS", "localhost,127.0.0.1,[::1],testserver")
CSRF_TRUSTED_ORIGINS = envlist("CSRF_TRUSTED_ORIGINS")
SITE_URL = os.environ.get("SITE_URL", "http://127.0.0.1:8000")
LAB_NAME = os.environ.get("LAB_NAME", "Print Lab")
LAB_CONTACT = os.environ.get("LAB_CONTACT", "lab@example.com")

INSTALLED_APPS = [
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
    "lab.privacy",
    "lab.notify",
    "lab.staff",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "lab.lib.middleware.RequestIdMiddleware",
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
        os.environ.get("DATABASE_URL", f"sqlite:///{VAR_DIR / 'lab.sqlite3'}"),
        conn_max_age=envint("DATABASE_CONN_MAX_AGE", 0),
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # WAL + a busy timeout let the web process, the worker and beat share one SQLite file.
    DATABASES["default"]["OPTIONS"] = {
        "timeout": 20,
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        "transaction_mode": "IMMEDIATE",
    }
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator", "OPTIONS": {"min_length": 10}},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
PASSWORD_HASHERS = envlist("PASSWORD_HASHERS") or [
    "django.contrib.auth.hashers.PBKDF2PasswordHasher",
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = False
USE_TZ = True

STATIC_URL = "/static/"
STATIC_ROOT = VAR_DIR / "static"
MEDIA_ROOT = Path(os.environ.get("LAB_STORAGE_DIR", VAR_DIR / "storage"))

# --- Cookies and staff sessions (policy: shared terminals, only the cookies needed) -------------
SESSION_COOKIE_AGE = envint("STAFF_SESSION_IDLE_SECONDS", 15 * 60)
SESSION_SAVE_EVERY_REQUEST = True  # idle timeout: every request pushes the expiry forward
SESSION_EXPIRE_AT_BROWSER_CLOSE = True
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
CSRF_COOKIE_SAMESITE = "Lax"
SECURE_COOKIES = envbool("SECURE_COOKIES", "false")
SESSION_COOKIE_SECURE = SECURE_COOKIES
CSRF_COOKIE_SECURE = SECURE_COOKIES
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"
SECURE_REFERRER_POLICY = "same-origin"

# --- REST API ----------------------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "api.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_PAGINATION_CLASS": "api.pagination.Pagination",
    "PAGE_SIZE": 20,
    "DEFAULT_FILTER_BACKENDS": ["django_filters.rest_framework.DjangoFilterBackend"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "api.errors.problem_exception_handler",
    "DEFAULT_THROTTLE_RATES": {
        "anon": os.environ.get("API_ANON_THROTTLE", "120/min"),
        "registration": os.environ.get("API_REGISTRATION_THROTTLE", "20/hour"),
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
    "ENUM_NAME_OVERRIDES": {"WebhookDeliveryStatusEnum": "lab.notify.states.DeliveryStatus"},
}

CACHES = {
    "default": (
        {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": os.environ["CACHE_URL"]}
        if os.environ.get("CACHE_URL")
        else {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}
    )
}

# --- Photos ------------------------------------------------------------------------------------
_default_master = base64.urlsafe_b64encode(secrets.token_bytes(32)).decode()
# Master keys: "id:base64key" entries, comma separated; the first one wraps new data keys, the
# others still unwrap old ones until `manage.py rotate_master_key` re-wraps them.
LAB_MASTER_KEYS = envlist("LAB_MASTER_KEY") or [
    "k1:" + _persistent_secret("LAB_MASTER_KEY_DEV", "master_key", _default_master)
]
ASSET_MAX_BYTES = envint("ASSET_MAX_BYTES", 100 * 1024 * 1024)
ASSET_MAX_PIXELS = envint("ASSET_MAX_PIXELS", 200_000_000)
ASSET_FETCH_TIMEOUT_SECONDS = envint("ASSET_FETCH_TIMEOUT_SECONDS", 30)
ASSET_FETCH_ALLOW_PRIVATE = envbool("ASSET_FETCH_ALLOW_PRIVATE", "false")
ASSET_FETCH_ALLOW_HTTP = envbool("ASSET_FETCH_ALLOW_HTTP", "false")
DATA_UPLOAD_MAX_MEMORY_SIZE = 10 * 1024 * 1024
FILE_UPLOAD_MAX_MEMORY_SIZE = 10 * 1024 * 1024

# --- Payments ----------------------------------------------------------------------------------
STRIPE_SECRET_KEY = os.environ.get("STRIPE_SECRET_KEY", "")
STRIPE_PUBLISHABLE_KEY = os.environ.get("STRIPE_PUBLISHABLE_KEY", "")
STRIPE_WEBHOOK_SECRET = os.environ.get("STRIPE_WEBHOOK_SECRET", "")
STRIPE_API_BASE = os.environ.get("STRIPE_API_BASE", "")  # e.g. http://127.0.0.1:8420 for localstripe
STRIPE_WEBHOOK_TOLERANCE_SECONDS = envint("STRIPE_WEBHOOK_TOLERANCE_SECONDS", 300)
LAB_CURRENCY = os.environ.get("LAB_CURRENCY", "usd")

# --- Celery ------------------------------------------------------------------------------------
_broker_dir = VAR_DIR / "broker"
CELERY_BROKER_URL = os.environ.get("CELERY_BROKER_URL", "filesystem://")
CELERY_TASK_TIME_LIMIT = envint("CELERY_TASK_TIME_LIMIT", 300)
CELERY_BROKER_TRANSPORT_OPTIONS: dict[str, object] = (
    {
        "data_folder_in": str(_broker_dir / "queue"),
        "data_folder_out": str(_broker_dir / "queue"),
        "control_folder": str(_broker_dir / "control"),
        "store_processed": False,
    }
    if CELERY_BROKER_URL.startswith("filesystem")
    # Above the longest time limit, so that an acks_late task still running is not redelivered.
    else {"visibility_timeout": CELERY_TASK_TIME_LIMIT * 4}
)
if CELERY_BROKER_URL.startswith("filesystem"):
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
# A job held at the printer (never started) longer than this is cancelled there and failed for a technician.
PRODUCTION_STUCK_JOB_SECONDS = envint("PRODUCTION_STUCK_JOB_SECONDS", 1800)
# How long a hand-off (paid -> released, queued -> raster message) may take before the reconciler redoes it.
PRODUCTION_HANDOFF_GRACE_SECONDS = float(
    os.environ.get("PRODUCTION_HANDOFF_GRACE_SECONDS", str(PRODUCTION_POLL_SECONDS * 2))
)
CUPS_SERVER = os.environ.get("CUPS_SERVER", "")  # host:port; empty = the system default
HOTFOLDER_ROOT = Path(os.environ.get("HOTFOLDER_ROOT", VAR_DIR / "spool"))

# --- Retention (privacy policy: photos kept only as long as strictly necessary) --------------------
RETENTION_SHIPPED_DAYS = envint("RETENTION_SHIPPED_DAYS", 30)
RETENTION_RASTER_DAYS = envint("RETENTION_RASTER_DAYS", 7)
RETENTION_UNPAID_DAYS = envint("RETENTION_UNPAID_DAYS", 7)
RETENTION_UNUSED_DAYS = envint("RETENTION_UNUSED_DAYS", 7)
RETENTION_BATCH = envint("RETENTION_BATCH", 500)
RETENTION_SWEEP_SECONDS = envint("RETENTION_SWEEP_SECONDS", 3600)
# How often beat looks for order events whose e-mail/webhook message was lost (and how old they must be).
NOTIFY_SWEEP_SECONDS = envint("NOTIFY_SWEEP_SECONDS", 60)

# --- Audit ---------------------------------------------------------------------------------------
AUDIT_GRANT_SECONDS = envint("AUDIT_GRANT_SECONDS", 600)
AUDIT_BURST_ORDERS = envint("AUDIT_BURST_ORDERS", 10)  # one person viewing this many orders ...
AUDIT_BURST_MINUTES = envint("AUDIT_BURST_MINUTES", 15)  # ... within this window is flagged
AUDIT_REPEAT_VIEWS = envint("AUDIT_REPEAT_VIEWS", 5)  # repeated views of one order ...
AUDIT_REPEAT_HOURS = envint("AUDIT_REPEAT_HOURS", 24)  # ... within this window are flagged
AUDIT_REVIEW_SAMPLE_SIZE = envint("AUDIT_REVIEW_SAMPLE_SIZE", 20)  # daily random sample of views to review
AUDIT_CHECKPOINT_SECONDS = envint("AUDIT_CHECKPOINT_SECONDS", 3600)
# Ed25519 private key (PEM or base64 raw) that signs checkpoints; kept outside the database.
AUDIT_SIGNING_KEY = os.environ.get("AUDIT_SIGNING_KEY") or _persistent_secret(
    "AUDIT_SIGNING_KEY_DEV", "audit_signing_key", base64.b64encode(secrets.token_bytes(32)).decode()
)

# --- Customer webhooks -------------------------------------------------------------------------
WEBHOOK_ALLOW_PRIVATE = envbool("WEBHOOK_ALLOW_PRIVATE", "false")
WEBHOOK_ALLOW_HTTP = envbool("WEBHOOK_ALLOW_HTTP", "false")

# --- E-mail ------------------------------------------------------------------------------------
EMAIL_BACKEND = os.environ.get("EMAIL_BACKEND", "django.core.mail.backends.filebased.EmailBackend")
EMAIL_FILE_PATH = VAR_DIR / "mail"
DEFAULT_FROM_EMAIL = os.environ.get("DEFAULT_FROM_EMAIL", "orders@printlab.example")
EMAIL_HOST = os.environ.get("EMAIL_HOST", "localhost")
EMAIL_PORT = envint("EMAIL_PORT", 25)

# --- Logging: ids only, never personal data (STYLE rule 14) -------------------------------------
LOG_LEVEL = os.environ.get("LOG_LEVEL", "INFO")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    # Third-party clients log request/response bodies at DEBUG/INFO; keep them out of the lab's logs.
    "loggers": {
        "django.db.backends": {"level": "WARNING"},
        "stripe": {"level": "WARNING"},
        "urllib3": {"level": "WARNING"},
    },
}
