"""Django settings for estiba.

Everything a deployment changes comes from the environment, with defaults that
work on one Debian host (``make run``):

- ``DATABASE_URL``: ``postgres://user:pass@host:5432/name``; SQLite by default
  (``ESTIBA_SQLITE_PATH``, or ``db.sqlite3`` beside manage.py).
- ``REDIS_URL``: Celery's broker and result backend, Channels' layer, the event
  bus and the gateway's streams (``redis://127.0.0.1:6390/0`` by default, the
  private Redis ``scripts/run.sh`` starts).
- ``ESTIBA_ROOT``, ``ESTIBA_RUN_DIR``, ``ESTIBA_PREFIX``: the engine's root
  directory, volatile state and host-object prefix (read by the worker).
- ``ESTIBA_HOSTNAME``: this host's name; its worker consumes ``host.<name>``.
- ``ESTIBA_SECRET_KEY`` (else a key kept in ``ESTIBA_STATE_DIR``), ``ESTIBA_DEBUG``,
  ``ESTIBA_ALLOWED_HOSTS`` (comma separated).
"""

from __future__ import annotations

import importlib.util
import os
import secrets
import socket
from pathlib import Path
from urllib.parse import unquote, urlparse

from django.utils.translation import gettext_lazy as _

BASE_DIR = Path(__file__).resolve().parent.parent
STATE_DIR = Path(os.environ.get("ESTIBA_STATE_DIR", "/var/lib/estiba"))


def _secret_key() -> str:
    """The key from the environment, else one made once and kept beside the engine's state."""
    if key := os.environ.get("ESTIBA_SECRET_KEY"):
        return key
    path = STATE_DIR / "django-secret-key"
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        pass
    except OSError:
        return "estiba-insecure-" + secrets.token_urlsafe(32)
    try:
        STATE_DIR.mkdir(parents=True, exist_ok=True)
        key = secrets.token_urlsafe(50)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(key)
        return key
    except FileExistsError:
        return path.read_text().strip()
    except OSError:
        # Not root (e.g. a linter importing settings): a per-process key is enough.
        return "estiba-insecure-" + secrets.token_urlsafe(32)


def _database(url: str | None) -> dict:
    if not url:
        return {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": os.environ.get("ESTIBA_SQLITE_PATH", str(BASE_DIR / "db.sqlite3")),
            # The worker and daphne write at the same time: WAL and a patient lock.
            "OPTIONS": {
                "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
                "transaction_mode": "IMMEDIATE",
                "timeout": 30,
            },
            # Kept open: the worker projects every engine event, and a new connection
            # (with its PRAGMAs) per event cost more than the event's own queries.
            "CONN_MAX_AGE": 600,
            "TEST": {"NAME": os.environ.get(
                "ESTIBA_TEST_SQLITE_PATH", f"/tmp/estiba-test-{os.getpid()}.sqlite3")},
        }
    parsed = urlparse(url)
    if parsed.scheme not in ("postgres", "postgresql", "pgsql"):
        raise ValueError(f"DATABASE_URL: unsupported scheme {parsed.scheme!r} (use postgres://)")
    return {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": parsed.path.lstrip("/"),
        "USER": unquote(parsed.username or ""),
        "PASSWORD": unquote(parsed.password or ""),
        "HOST": parsed.hostname or "",
        "PORT": str(parsed.port or ""),
        "CONN_MAX_AGE": 60,
    }


SECRET_KEY = _secret_key()
DEBUG = os.environ.get("ESTIBA_DEBUG", "") in ("1", "true", "yes")
ALLOWED_HOSTS = ["127.0.0.1", "localhost", "[::1]"] + [
    h.strip() for h in os.environ.get("ESTIBA_ALLOWED_HOSTS", "").split(",") if h.strip()
]
CSRF_TRUSTED_ORIGINS = [
    o.strip() for o in os.environ.get("ESTIBA_CSRF_TRUSTED_ORIGINS", "").split(",") if o.strip()
]

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "channels",
    "estiba",
    "accounts_app",
    "hosts_app",
    "containers_app",
    "images_app",
    "volumes_app",
    "networks_app",
]
# --- other apps plug in here (lessons_app, dockerapi): added when importable -------------
OPTIONAL_APPS = ["lessons_app", "dockerapi"]
for _app in OPTIONAL_APPS:
    if importlib.util.find_spec(_app) is not None:
        INSTALLED_APPS.append(_app)

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    # The architecture lesson sees each dashboard request (fire and forget, lessons_app/requests.py)
    *(["lessons_app.requests.RequestTap"] if "lessons_app" in INSTALLED_APPS else []),
    # Login everywhere; views that must stay open use @login_not_required.
    "django.contrib.auth.middleware.LoginRequiredMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "estiba.urls"
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.template.context_processors.i18n",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]
WSGI_APPLICATION = None
ASGI_APPLICATION = "estiba.asgi.application"

DATABASES = {"default": _database(os.environ.get("DATABASE_URL"))}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "containers:list"
LOGOUT_REDIRECT_URL = "login"

# --- i18n: Spanish and English, the browser's language by default ------------------------
LANGUAGE_CODE = "en"
LANGUAGES = [("es", _("Spanish")), ("en", _("English"))]
LOCALE_PATHS = [BASE_DIR / "locale"]
USE_I18N = True
TIME_ZONE = "UTC"
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = BASE_DIR / "staticfiles"
FILE_UPLOAD_MAX_MEMORY_SIZE = 8 * 1024 * 1024
DATA_UPLOAD_MAX_MEMORY_SIZE = 16 * 1024 * 1024

# --- Redis, Channels, Celery ----------------------------------------------------------
REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6390/0")


def channel_layers(redis_url: str) -> dict:
    """Channels' layer on ``redis_url``, without a socket timeout: the layer blocks in
    BZPOPMIN for 5 s, and redis-py 8's default socket timeout of 5 s would cut it."""
    return {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": [{"address": redis_url, "socket_timeout": None}],
                       "capacity": 1500, "expiry": 30},
        }
    }


CHANNEL_LAYERS = channel_layers(REDIS_URL)
CELERY_BROKER_URL = REDIS_URL
CELERY_RESULT_BACKEND = REDIS_URL
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_RESULT_EXPIRES = 3600
CELERY_TASK_DEFAULT_QUEUE = "estiba.default"
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_ACKS_LATE = False
# A call's caller waits for its answer and gives up after its timeout, so a task
# taken by a worker that died is better lost than run again minutes later by the
# next worker (what the Redis transport's emulated acks would do). Without them
# a delivery costs one BRPOP instead of two MULTI transactions more.
CELERY_BROKER_TRANSPORT_OPTIONS = {
    "ack_emulation": os.environ.get("ESTIBA_ACK_EMULATION", "0") == "1"}
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True

# --- the engine and its hosts ----------------------------------------------------------
ESTIBA_HOSTNAME = os.environ.get("ESTIBA_HOSTNAME") or socket.gethostname()
ESTIBA_ROOT = os.environ.get("ESTIBA_ROOT", "/var/lib/estiba")
ESTIBA_RUN_DIR = os.environ.get("ESTIBA_RUN_DIR", "/run/estiba")
ESTIBA_PREFIX = os.environ.get("ESTIBA_PREFIX", "estiba")
ESTIBA_REGISTRY = os.environ.get("ESTIBA_REGISTRY", "127.0.0.1:5000")
#: Seconds between the worker's reconciles of the projection with the engine's truth.
ESTIBA_RECONCILE_INTERVAL = float(os.environ.get("ESTIBA_RECONCILE_INTERVAL", "2"))
#: A host whose worker has not beaten for this long is shown as offline.
ESTIBA_HEARTBEAT_TIMEOUT = 15

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": "WARNING"},
    "loggers": {"estiba": {"level": "INFO"}},
}
