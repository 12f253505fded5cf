"""Settings for the CBIR reader-study platform.

Everything comes from the environment through the typed helpers in core.env; one
module serves development, tests and production. See the configuration table in docs/configuration.md.
"""

from __future__ import annotations

import json
import os
import re
from datetime import timedelta
from pathlib import Path

import dj_database_url

from core.env import ConfigError, envbool, envint, envlist, envstr, envurl

BASE_DIR = Path(__file__).resolve().parent.parent
DATA_DIR = Path(envstr("DATA_DIR", str(BASE_DIR / "var"))).resolve()

DEBUG = envbool("DEBUG", False)
SECRET_KEY = envstr("SECRET_KEY")
if SECRET_KEY is None and (_key_file := envstr("SECRET_KEY_FILE")):  # e.g. a Docker secret; `make demo` makes one
    try:
        SECRET_KEY = Path(_key_file).read_text().strip() or None
    except OSError as exc:
        raise ConfigError(f"SECRET_KEY_FILE {_key_file!r} cannot be read: {exc.strerror}") from None
    if SECRET_KEY is None:
        raise ConfigError(f"SECRET_KEY_FILE {_key_file!r} is empty")
if SECRET_KEY is None:
    if not DEBUG:
        raise ConfigError(
            "SECRET_KEY (or SECRET_KEY_FILE) is required when DEBUG is off (set DEBUG=true for development)"
        )
    SECRET_KEY = "insecure-development-key-do-not-use-in-production"
ALLOWED_HOSTS = envlist("ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]"])
CSRF_TRUSTED_ORIGINS = envlist("CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "axes",
    "core",
    "readerstudy",
    "retrieval",
    "annotations",
    "reports",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "csp.middleware.CSPMiddleware",
    "core.http.RejectNulMiddleware",
    "core.http.RejectHugeIdMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "core.security.NoStoreMiddleware",
    "core.http.BrokerUnavailableMiddleware",
    "axes.middleware.AxesMiddleware",  # last: turns a locked-out login into the lockout page (429)
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"
ASGI_APPLICATION = "config.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "core.roles.roles_context",
            ],
        },
    },
]

# --- Database: DATABASE_URL, default an SQLite file under DATA_DIR -------------------------
DATABASE_URL = envstr("DATABASE_URL", f"sqlite:///{DATA_DIR / 'db.sqlite3'}")
try:
    _conn_max_age = envint("DB_CONN_MAX_AGE", 0, minimum=0)
    # A kept connection is checked before each request reuses it: a database restart or a killed
    # connection costs no 500 (one per pooled connection without the check).
    DATABASES = {
        "default": dj_database_url.parse(DATABASE_URL, conn_max_age=_conn_max_age, conn_health_checks=_conn_max_age > 0)
    }
except Exception as exc:  # dj-database-url raises several types for a bad URL
    raise ConfigError(f"DATABASE_URL is not a valid database URL: {exc}") from None
if not DATABASES["default"].get("NAME"):  # e.g. postgres://user@host:5432/ names no database
    raise ConfigError(
        f"DATABASE_URL names no database: give it as the path, e.g. "
        f"postgres://user@host:5432/cbir (got {DATABASE_URL!r})"
    )
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # A file, not memory, so that a worker process started by the tests sees the test database.
    DATABASES["default"]["TEST"] = {"NAME": str(DATA_DIR / "test-db.sqlite3")}
    # WAL + IMMEDIATE transactions let the web process and the worker write side by side.
    DATABASES["default"]["OPTIONS"] = {
        "timeout": 30,
        "transaction_mode": "IMMEDIATE",
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en-gb"
TIME_ZONE = envstr("TIME_ZONE", "UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = Path(envstr("STATIC_ROOT", str(DATA_DIR / "static")))
STATIC_ROOT.mkdir(parents=True, exist_ok=True)  # WhiteNoise warns on every request otherwise
# Media (originals, renditions, thumbnails, values) and run artefacts (model weights, embeddings, indexes,
# overlays) go through Django's storage API (core.files): the local folders below by default, or one
# S3-compatible bucket (AWS S3, MinIO, ...) when the web process and workers run on several machines
# (MEDIA_STORAGE=s3; docs/configuration.md#shared-storage-s3-minio). The bucket stays private: every image
# is served through the permission-checked views, never by a public or presigned bucket address.
MEDIA_STORAGE = envstr("MEDIA_STORAGE", "local")
if MEDIA_STORAGE not in ("local", "s3"):
    raise ConfigError(f"MEDIA_STORAGE must be 'local' or 's3', not {MEDIA_STORAGE!r}")


def _s3_storage(location: str) -> dict:
    bucket = envstr("AWS_STORAGE_BUCKET_NAME")
    if not bucket:
        raise ConfigError("MEDIA_STORAGE=s3 needs AWS_STORAGE_BUCKET_NAME (the bucket's name)")
    options = {
        "bucket_name": bucket,
        "location": location,
        "default_acl": "private",
        "querystring_auth": True,  # no public object addresses (and the views never hand out any)
        "file_overwrite": True,  # content-addressed names: a rewrite is the same file (core.files.save_atomic)
        "region_name": envstr("AWS_S3_REGION_NAME"),
        "endpoint_url": envstr("AWS_S3_ENDPOINT_URL"),  # MinIO and other S3-compatible servers
        "access_key": envstr("AWS_ACCESS_KEY_ID"),
        "secret_key": envstr("AWS_SECRET_ACCESS_KEY"),
        "addressing_style": envstr("AWS_S3_ADDRESSING_STYLE"),  # "path" for most MinIO set-ups
    }
    return {"BACKEND": "storages.backends.s3.S3Storage", "OPTIONS": {k: v for k, v in options.items() if v}}


STORAGES = {
    "default": (
        _s3_storage(envstr("AWS_S3_MEDIA_PREFIX", "media"))
        if MEDIA_STORAGE == "s3"
        else {"BACKEND": "django.core.files.storage.FileSystemStorage"}
    ),
    # Run artefacts. Local: ARTEFACT_ROOT itself (never accessed through this entry). S3: the bucket, with
    # ARTEFACT_ROOT as each machine's working copy (retrieval.runs.artefacts).
    "artefacts": (
        _s3_storage(envstr("AWS_S3_ARTEFACT_PREFIX", "artefacts"))
        if MEDIA_STORAGE == "s3"
        else {"BACKEND": "django.core.files.storage.FileSystemStorage"}
    ),
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}
WHITENOISE_USE_FINDERS = DEBUG
MEDIA_URL = "media/"
MEDIA_ROOT = Path(envstr("MEDIA_ROOT", str(DATA_DIR / "media"))).resolve()
# Reader images sent by the web server in front of gunicorn without a Python request per image
# (core/image_links.py, docker/nginx.conf.template): the reader's pages address each image by a signed link
# under IMAGE_LINK_URL, a symbolic link under IMAGE_LINK_ROOT to the file under MEDIA_ROOT, checked by nginx
# (`secure_link`) against IMAGE_LINK_SECRET, the same value nginx is given. Empty: Django sends the images.
IMAGE_LINK_SECRET = envstr("IMAGE_LINK_SECRET", "")
IMAGE_LINK_URL = "/reader-images/"  # the location of docker/nginx.conf.template
IMAGE_LINK_ROOT = Path(envstr("IMAGE_LINK_ROOT", str(DATA_DIR / "reader-links"))).resolve()
if IMAGE_LINK_SECRET and not re.fullmatch(r"[A-Za-z0-9_-]{32,}", IMAGE_LINK_SECRET):  # written into nginx's config
    raise ConfigError(
        "IMAGE_LINK_SECRET must be 32 or more letters, digits, '-' or '_' "
        "(python3 -c 'import secrets; print(secrets.token_urlsafe(32))')"
    )
if IMAGE_LINK_SECRET and MEDIA_STORAGE != "local":
    raise ConfigError(
        "IMAGE_LINK_SECRET needs MEDIA_STORAGE=local: nginx sends files from MEDIA_ROOT, and with "
        f"MEDIA_STORAGE={MEDIA_STORAGE} the images are in the bucket (leave IMAGE_LINK_SECRET empty)"
    )
# Where uploaded archives wait for the import task (not served).
UPLOAD_ROOT = Path(envstr("UPLOAD_ROOT", str(DATA_DIR / "uploads"))).resolve()
# A failed import's uploads, kept for a retry only after an unexpected failure, at most this long.
IMPORT_UPLOAD_KEEP_HOURS = envint("IMPORT_UPLOAD_KEEP_HOURS", 24, minimum=0)
# The only folder a run's `weights` may name a checkpoint file in (anything else: one generic refusal).
WEIGHTS_DIR = Path(envstr("WEIGHTS_DIR", str(DATA_DIR / "checkpoints"))).resolve()
# The server may reach the Hugging Face hub (HF_ENDPOINT): `manage.py fetch_weights` and the run form's
# "Fetch weights" download into the cache. Runs never download, whatever this says (retrieval.ml.fetch).
WEIGHTS_DOWNLOAD = envbool("WEIGHTS_DOWNLOAD", False)
# Model runs: checkpoints, embeddings, FAISS indexes (not served).
ARTEFACT_ROOT = Path(envstr("ARTEFACT_ROOT", str(DATA_DIR / "artefacts"))).resolve()
# With MEDIA_STORAGE=s3: where a machine keeps its copies of the media files its workers read (renditions
# for the models; content-addressed names, so a copy is never stale). Safe to empty at any time.
STORAGE_CACHE_ROOT = Path(envstr("STORAGE_CACHE_ROOT", str(DATA_DIR / "cache"))).resolve()
DATA_UPLOAD_MAX_MEMORY_SIZE = 10 * 1024 * 1024
FILE_UPLOAD_MAX_MEMORY_SIZE = 10 * 1024 * 1024

# --- Import limits ----------------------------------------------------------------------------
IMPORT_MAX_PIXELS = envint("IMPORT_MAX_PIXELS", 64_000_000, minimum=1)
IMPORT_MAX_FILE_BYTES = envint("IMPORT_MAX_FILE_BYTES", 512 * 1024 * 1024, minimum=1)
IMPORT_MAX_ARCHIVE_MEMBERS = envint("IMPORT_MAX_ARCHIVE_MEMBERS", 200_000, minimum=1)
# Total uncompressed bytes one archive may hold (from its headers, and counted again while reading): zip bombs.
IMPORT_MAX_ARCHIVE_BYTES = envint("IMPORT_MAX_ARCHIVE_BYTES", 64 * 1024**3, minimum=1)
RENDITION_MAX_SIDE = envint("RENDITION_MAX_SIDE", 1024, minimum=64)
# An import of more units than this runs as chunks of this many, one task each, on every cpu worker (core.fanout).
IMPORT_CHUNK_SIZE = envint("IMPORT_CHUNK_SIZE", 200, minimum=1)
# A run embedding more images than this embeds them in shards of this many, one gpu-queue task each.
EMBED_SHARD_SIZE = envint("EMBED_SHARD_SIZE", 2000, minimum=1)
THUMBNAIL_MAX_SIDE = envint("THUMBNAIL_MAX_SIDE", 256, minimum=32)

# --- PACS over DICOMweb (retrieval.imports.dicomweb; docs/importing.md#from-a-pacs-dicomweb) -------
# The endpoints coordinators may import from, by name: a JSON object
# {"name": {"url": "https://pacs/dicom-web", "username": …, "password": …} or {"url": …, "token": …}};
# optional "timeout" (seconds, default 30) and "verify" (false, or a CA bundle path). Credentials live
# here (or in the environment of the web process and the workers), never in the database or a form.
DICOMWEB_ENDPOINT_KEYS = {"url", "username", "password", "token", "timeout", "verify"}


def _dicomweb_endpoints(raw: str | None) -> dict[str, dict]:
    if not raw:
        return {}
    try:
        value = json.loads(raw)
    except ValueError as exc:
        raise ConfigError(f"DICOMWEB_ENDPOINTS must be a JSON object: {exc}") from None
    if not isinstance(value, dict):
        raise ConfigError("DICOMWEB_ENDPOINTS must be a JSON object of endpoint name -> settings")
    for name, conf in value.items():
        if not isinstance(conf, dict) or not str(conf.get("url", "")).startswith(("http://", "https://")):
            raise ConfigError(f'DICOMWEB_ENDPOINTS[{name!r}] needs a "url" starting with http:// or https://')
        if unknown := set(conf) - DICOMWEB_ENDPOINT_KEYS:
            raise ConfigError(f"DICOMWEB_ENDPOINTS[{name!r}]: unknown keys {sorted(unknown)}")
        if conf.get("token") and (conf.get("username") or conf.get("password")):
            raise ConfigError(f"DICOMWEB_ENDPOINTS[{name!r}]: give a token or a username and password, not both")
    return value


DICOMWEB_ENDPOINTS = _dicomweb_endpoints(envstr("DICOMWEB_ENDPOINTS"))

# --- Model runs ---------------------------------------------------------------------------------
# DataLoader worker processes that decode and preprocess images while the model runs: the default
# of every new run (`--workers` of train/embed, runs created on the web page). One core is left
# to the process feeding the model; at most 4, since decoding then outpaces a small backbone.
_CPUS = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
DATALOADER_WORKERS = envint("DATALOADER_WORKERS", max(0, min(4, _CPUS - 1)), minimum=0)

# --- Celery -------------------------------------------------------------------------------------
# Default: kombu's filesystem transport, an embedded broker that needs no server. Any worker
# started with the same DATA_DIR picks the tasks up. Production: CELERY_BROKER_URL=redis://...
# memory:// only works inside one process (no separate worker sees it); kept for experiments.
BROKER_SCHEMES = ("filesystem", "redis", "rediss", "sentinel", "amqp", "amqps", "pyamqp", "memory")
CELERY_BROKER_URL = envurl("CELERY_BROKER_URL", "filesystem://localhost/", schemes=BROKER_SCHEMES)
if CELERY_BROKER_URL in ("filesystem://", "filesystem:///"):
    CELERY_BROKER_URL = "filesystem://localhost/"  # kombu warns "No hostname was supplied" on every connection
# --- Job limits (docs/configuration.md#jobs-and-workers) ---
# Every task has a soft limit (the job fails with a message) and a hard one (its process is killed;
# the job is then handled as a lost worker's), per queue. The gpu worker's solo pool enforces only
# the soft one, by an alarm in the task (core.tasks).
CPU_TASK_SOFT_TIME_LIMIT = envint("CPU_TASK_SOFT_TIME_LIMIT", 6 * 3600, minimum=1)
CPU_TASK_TIME_LIMIT = envint("CPU_TASK_TIME_LIMIT", CPU_TASK_SOFT_TIME_LIMIT + 300, minimum=1)
GPU_TASK_SOFT_TIME_LIMIT = envint("GPU_TASK_SOFT_TIME_LIMIT", 72 * 3600, minimum=1)
GPU_TASK_TIME_LIMIT = envint("GPU_TASK_TIME_LIMIT", GPU_TASK_SOFT_TIME_LIMIT + 300, minimum=1)
if CPU_TASK_TIME_LIMIT <= CPU_TASK_SOFT_TIME_LIMIT or GPU_TASK_TIME_LIMIT <= GPU_TASK_SOFT_TIME_LIMIT:
    raise ConfigError("CPU_TASK_TIME_LIMIT / GPU_TASK_TIME_LIMIT must be longer than their *_SOFT_TIME_LIMIT")
# A cpu-queue task whose process's resident memory passes this is stopped during the task (core.tasks: the memory
# watch), its job failed with a message, rather than the kernel killing a process; 0: no limit.
CPU_TASK_MEMORY_LIMIT_MB = envint("CPU_TASK_MEMORY_LIMIT_MB", 4096, minimum=0)
# The gpu worker's own process (host memory; the GPU's memory is the batch size's business) during a gpu task.
GPU_TASK_MEMORY_LIMIT_MB = envint("GPU_TASK_MEMORY_LIMIT_MB", 16384, minimum=0)
# Redis (and SQS) keep a delivered, unacknowledged message invisible this long; then they deliver it
# again. Longer than the longest task (with acks_late a task still running would otherwise be
# delivered twice); a worker that died is not waited for: its jobs are sent again by the requeue.
BROKER_VISIBILITY_TIMEOUT = max(CPU_TASK_TIME_LIMIT, GPU_TASK_TIME_LIMIT) + 3600
CELERY_BROKER_TRANSPORT_OPTIONS: dict = {"visibility_timeout": BROKER_VISIBILITY_TIMEOUT}
if CELERY_BROKER_URL.split(":", 1)[0] in ("redis", "rediss", "sentinel"):
    # A broker host that is down answers nothing: a request queueing a job gives up after seconds (a 503 that
    # keeps the job pending) instead of waiting for the operating system's connect timeout.
    CELERY_BROKER_TRANSPORT_OPTIONS["socket_connect_timeout"] = 5
# Sending a task is tried three times within about a second before the job is left pending (a 503).
CELERY_TASK_PUBLISH_RETRY_POLICY = {"max_retries": 2, "interval_start": 0, "interval_step": 0.5, "interval_max": 0.5}
if CELERY_BROKER_URL.startswith("filesystem://"):
    _queue_dir = DATA_DIR / "broker"
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        **CELERY_BROKER_TRANSPORT_OPTIONS,
        "data_folder_in": str(_queue_dir / "queue"),
        "data_folder_out": str(_queue_dir / "queue"),
        "control_folder": str(_queue_dir / "control"),
        "store_processed": False,
    }
    for _sub in ("queue", "control"):
        (_queue_dir / _sub).mkdir(parents=True, exist_ok=True)
# Task state lives in our own tables (status + progress on the job rows), not in a result backend.
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_DEFAULT_QUEUE = "cpu"
CELERY_TASK_ALWAYS_EAGER = envbool("CELERY_TASK_ALWAYS_EAGER", False)
CELERY_TASK_EAGER_PROPAGATES = True
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
# A running job whose heartbeat is older than this is taken to have lost its worker (for a claimant on
# another host; on the same host the claiming process is checked directly: core.jobs.job_claim).
JOB_STALE_SECONDS = envint("JOB_STALE_SECONDS", 300, minimum=1)
# A job whose worker was lost this many times is failed with a message instead of being taken over again.
JOB_MAX_WORKER_LOSSES = envint("JOB_MAX_WORKER_LOSSES", 3, minimum=1)
# Every worker sends again, at start and every JOB_REQUEUE_SECONDS (0: never), the tasks of pending jobs
# that never reached the broker (older than JOB_REQUEUE_GRACE_SECONDS) and of jobs whose worker was lost.
JOB_REQUEUE_SECONDS = envint("JOB_REQUEUE_SECONDS", 60, minimum=0)
JOB_REQUEUE_GRACE_SECONDS = envint("JOB_REQUEUE_GRACE_SECONDS", 10, minimum=0)

# --- REST framework + OpenAPI ------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.SessionAuthentication",
        "core.security.ThrottledBasicAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "core.errors.api_exception_handler",
    "DEFAULT_PAGINATION_CLASS": "core.http.BoundedLimitOffsetPagination",
    "PAGE_SIZE": 100,
}
SPECTACULAR_SETTINGS = {
    "TITLE": "CBIR reader-study platform API",
    "DESCRIPTION": "Image collections, retrieval runs, reader studies and agreement reports.",
    "VERSION": "0.1.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SERVE_PERMISSIONS": ["rest_framework.permissions.IsAuthenticated"],  # schema and docs: signed-in users only
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
}

# --- Security: HTTPS, cookies, sessions, login throttling, Content-Security-Policy --------------------
# Production behind a TLS-terminating proxy: see the security table in docs/configuration.md.
SESSION_COOKIE_SECURE = envbool("SESSION_COOKIE_SECURE", False)
CSRF_COOKIE_SECURE = envbool("CSRF_COOKIE_SECURE", False)
SECURE_SSL_REDIRECT = envbool("SECURE_SSL_REDIRECT", False)
SECURE_REDIRECT_EXEMPT = [r"^healthz/$"]  # the container's health check calls plain HTTP from inside
SECURE_HSTS_SECONDS = envint("SECURE_HSTS_SECONDS", 0, minimum=0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = envbool("SECURE_HSTS_INCLUDE_SUBDOMAINS", False)
SECURE_HSTS_PRELOAD = envbool("SECURE_HSTS_PRELOAD", False)
# A reverse proxy in front (nginx, traefik …) that sets X-Forwarded-Proto and appends X-Forwarded-For:
# requests are then HTTPS when it says so, and the login throttle counts the address it appended.
BEHIND_PROXY = envbool("BEHIND_PROXY", False)
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https") if BEHIND_PROXY else None
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
# Sessions end after SESSION_IDLE_MINUTES without a request (every request renews the cookie).
SESSION_COOKIE_AGE = envint("SESSION_IDLE_MINUTES", 60, minimum=1) * 60
SESSION_SAVE_EVERY_REQUEST = True
SESSION_COOKIE_HTTPONLY = True

# Login throttling (django-axes): LOGIN_FAILURE_LIMIT failures per account or per address lock it for
# LOGIN_COOLOFF_MINUTES; the right password is refused meanwhile. See core/security.py.
AUTHENTICATION_BACKENDS = ["core.security.LoginThrottleBackend", "django.contrib.auth.backends.ModelBackend"]
AXES_FAILURE_LIMIT = envint("LOGIN_FAILURE_LIMIT", 5, minimum=1)
AXES_COOLOFF_TIME = timedelta(minutes=envint("LOGIN_COOLOFF_MINUTES", 15, minimum=1))
AXES_LOCKOUT_PARAMETERS = ["username", "ip_address"]  # either one locks: per account and per address
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_CALLABLE = "core.security.lockout_response"
AXES_CLIENT_IP_CALLABLE = "core.security.client_ip"
AXES_HTTP_RESPONSE_CODE = 429
AXES_SENSITIVE_PARAMETERS: list[str] = []  # failures are logged with user name and address (never the password)

# Content-Security-Policy (django-csp): scripts and style sheets from this site only, no inline script or
# <style>; style attributes (progress-bar widths) are allowed; images may also be data: URIs (report
# figures). The API docs pages (Swagger UI, ReDoc) relax it for their own inline code: config/urls.py.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'"],
        "style-src-attr": ["'unsafe-inline'"],
        "img-src": ["'self'", "data:", "blob:"],
        "font-src": ["'self'", "data:"],
        "connect-src": ["'self'"],
        "object-src": ["'none'"],
        "base-uri": ["'self'"],
        "form-action": ["'self'"],
        "frame-ancestors": ["'none'"],
    }
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {
        "client_errors": {"()": "core.logfilters.ClientErrorsWithoutTraceback"},
        "progress_polls": {"()": "core.logfilters.QuietProgressPolls"},
    },
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": envstr("LOG_LEVEL", "INFO")},
    "loggers": {
        # pydicom logs every decoder plugin that fails before another succeeds; the import report
        # already records files that no plugin decodes.
        "pydicom": {"level": "CRITICAL"},
        # faiss tells at INFO, in every worker process, which of its builds it loaded
        "faiss.loader": {"level": "WARNING"},
        # django-axes: login failures and lockouts at WARNING; its INFO lines (start-up, each login) are noise
        "axes": {"level": "WARNING"},
        "django.request": {"filters": ["client_errors"]},
        # runserver's request lines (Django's default sends them to a handler of its own, replaced here)
        "django.server": {"handlers": ["console"], "level": "INFO", "propagate": False, "filters": ["progress_polls"]},
    },
}
