"""django-oauth-toolkit behind Django's login view, for authprobe's tests (tests/common/django.rs).

Run with the Python of the virtual environment tests/run.sh installs requirements.txt into:

    PORT=8000 DATA_DIR=/tmp/x target/django-oauth/bin/python tests/django-oauth/serve.py

It serves http://127.0.0.1:$PORT with Django's own HTTP server (runserver's, without the
reloader), keeps its sqlite database in $DATA_DIR, signs ID tokens with an RSA key made at start
and prints "listening on ..." (flushed) once it accepts connections. Its issuer is
http://127.0.0.1:$PORT/o.

The migrated and seeded database (user, applications: their passwords hashed) takes seconds to
make: it is made once (by the first start, or by `serve.py --seed`, which tests/run.sh runs) and
kept in the virtual environment's folder, keyed by the versions of Django and DOT and by this
folder's Python files; each start copies it, and listens some 0.5 s after it was started.
"""

import hashlib
import os
import shutil
import sys
import tempfile
from pathlib import Path

sys.dont_write_bytecode = True  # no __pycache__ in the source tree

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

# The seed, which tests/common/django.rs repeats.
USER = "probe-user"
USER_PASSWORD = "dot-User-Pw-Ff63"
USER_EMAIL = "probe-user@authprobe.test"
CLIENT_SECRET = "dot-Secret-Jj74-distinct"
REDIRECT_URI = "https://app.authprobe.test/callback"
POST_LOGOUT_REDIRECT_URI = "https://app.authprobe.test/logged-out"
# client_id -> (name shown on the consent page, skip_authorization)
CLIENTS = {
    # DOT's consent page is shown on every authorization.
    "authprobe-app": ("authprobe test app", False),
    # Trusted: no consent page.
    "authprobe-trusted": ("authprobe trusted app", True),
}


def rsa_private_key_pem():
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


def template_path():
    """Where the seeded database is kept, or None when that place is not writable."""
    import django
    import oauth2_provider

    h = hashlib.sha256(f"{django.__version__} {oauth2_provider.__version__}".encode())
    for f in sorted(HERE.rglob("*.py")):
        h.update(f.read_bytes())
    d = Path(sys.prefix)
    if not os.access(d, os.W_OK):
        return None
    return d / f"authprobe-seed-{h.hexdigest()[:16]}.sqlite3"


def seed():
    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    from oauth2_provider.models import get_application_model

    call_command("migrate", verbosity=0, interactive=False)
    user = get_user_model().objects.create_user(
        USER, email=USER_EMAIL, password=USER_PASSWORD, first_name="Probe", last_name="User"
    )
    Application = get_application_model()
    for client_id, (name, skip) in CLIENTS.items():
        Application.objects.create(
            name=name,
            user=user,
            client_id=client_id,
            # Stored hashed (DOT's default); client_secret_basic and _post send it in plain.
            client_secret=CLIENT_SECRET,
            hash_client_secret=True,
            client_type=Application.CLIENT_CONFIDENTIAL,
            authorization_grant_type=Application.GRANT_AUTHORIZATION_CODE,
            redirect_uris=REDIRECT_URI,
            post_logout_redirect_uris=POST_LOGOUT_REDIRECT_URI,
            algorithm=Application.RS256_ALGORITHM,
            skip_authorization=skip,
        )


def main():
    # --seed: only make the seeded database if it is not there yet (tests/run.sh, after installing).
    seed_only = sys.argv[1:] == ["--seed"]
    port = 0 if seed_only else int(os.environ["PORT"])
    data_dir = Path(tempfile.mkdtemp() if seed_only else os.environ["DATA_DIR"])
    db = data_dir / "db.sqlite3"
    os.environ["DOT_DB"] = str(db)
    os.environ["DOT_ISSUER"] = f"http://127.0.0.1:{port}/o"
    os.environ["DJANGO_SETTINGS_MODULE"] = "idp.settings"
    if not seed_only:
        os.environ["DOT_RSA_PRIVATE_KEY"] = rsa_private_key_pem()

    template = template_path()
    seeded = template is not None and template.exists()
    if seed_only and (seeded or template is None):
        shutil.rmtree(data_dir)
        if template is None:
            sys.exit(f"{sys.prefix} is not writable: nowhere to keep the seeded database")
        return
    if seeded:
        shutil.copyfile(template, db)
    import django

    django.setup()
    if not seeded:
        seed()
        if template is not None:
            from django.db import connection

            connection.close()
            fd, tmp = tempfile.mkstemp(dir=template.parent, suffix=".tmp")
            os.close(fd)
            shutil.copyfile(db, tmp)
            os.replace(tmp, template)  # atomic: starts at the same time each see a whole file
            for old in template.parent.glob("authprobe-seed-*.sqlite3"):
                if old != template:
                    old.unlink(missing_ok=True)  # made by an earlier version of this folder
    if seed_only:
        shutil.rmtree(data_dir)
        return

    from django.core.servers.basehttp import run
    from django.core.wsgi import get_wsgi_application

    def on_bind(p):
        print(f"listening on http://127.0.0.1:{p}", flush=True)

    run("127.0.0.1", port, get_wsgi_application(), threading=True, on_bind=on_bind)


if __name__ == "__main__":
    main()
