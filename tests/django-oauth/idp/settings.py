"""Settings of the test identity provider: django-oauth-toolkit (DOT) behind Django's own login view.

serve.py sets the environment this reads: DOT_DB (the sqlite database), DOT_ISSUER and
DOT_RSA_PRIVATE_KEY (PEM), DOT_LOG_LEVEL (what reaches stderr; ERROR unless set).
"""

import os
from pathlib import Path

HERE = Path(__file__).resolve().parent.parent

SECRET_KEY = "authprobe-test-only-django-secret-key-not-for-production-Hh29"
# As in production: Django's plain error pages, no debug pages.
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]

INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "oauth2_provider",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "idp.urls"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [HERE / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
            ],
        },
    },
]

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ.get("DOT_DB", ":memory:"),
    }
}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

USE_TZ = True
TIME_ZONE = "UTC"
LANGUAGE_CODE = "en-us"
STATIC_URL = "static/"

LOGIN_URL = "/accounts/login/"

OAUTH2_PROVIDER = {
    "OIDC_ENABLED": True,
    "OIDC_ISS_ENDPOINT": os.environ.get("DOT_ISSUER", ""),
    "OIDC_RSA_PRIVATE_KEY": os.environ.get("DOT_RSA_PRIVATE_KEY", ""),
    "OIDC_RP_INITIATED_LOGOUT_ENABLED": True,
    "OAUTH2_VALIDATOR_CLASS": "idp.claims.Validator",
    "PKCE_REQUIRED": True,
    "SCOPES": {
        "openid": "OpenID Connect",
        "profile": "Your name and user name",
        "email": "Your e-mail address",
    },
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {
        "stderr": {"class": "logging.StreamHandler", "level": os.environ.get("DOT_LOG_LEVEL", "ERROR")}
    },
    "root": {"handlers": ["stderr"], "level": "INFO"},
    # Django's own handlers (access log, mail to admins) left out: everything goes to the root.
    "loggers": {
        "django": {"handlers": [], "propagate": True},
        "django.server": {"handlers": [], "propagate": True},
    },
}
