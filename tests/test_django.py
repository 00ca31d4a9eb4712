"""A real Django project behind fastgw, as docs/django.md configures it: the project
at "/", collectstatic's files (ManifestStaticFilesStorage) at /static/ with the
manifest's cache headers, and directories protected by Django's own
django.contrib.auth.handlers.modwsgi check_password and groups_for_user.

The project is made by the test: startproject, migrate, collectstatic, a superuser,
a "staff" group with one member, all in a temporary directory."""
import os
import re
import subprocess
import sys
import urllib.parse

import pytest

from fgwtest import basic_auth, cookies_of, http_request

try:
    import django  # noqa: F401
except ImportError:  # pragma: no cover - the test extra installs it
    if os.environ.get("CI") == "true":
        pytest.fail("Django is not installed; it is in the test extra "
                    "(pip install -e '.[test]')", pytrace=False)
    pytest.skip("Django is not installed (pip install django)", allow_module_level=True)

SETTINGS_EXTRA = '''
ALLOWED_HOSTS = ["*"]
DEBUG = False
STATIC_ROOT = BASE_DIR / "staticroot"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.ManifestStaticFilesStorage"},
}
'''

SETUP_USERS = '''
from django.contrib.auth.models import Group, User
admin = User.objects.create_superuser("admin", "admin@example.com", "admin-pw-1")
alice = User.objects.create_user("alice", "alice@example.com", "alice-pw-1")
staff = Group.objects.create(name="staff")
alice.groups.add(staff)
User.objects.create_user("gone", "gone@example.com", "gone-pw-1", is_active=False)
'''

WHOAMI = '''
def application(environ, start_response):
    body = ("%s %s %s" % (environ.get("REMOTE_USER"), environ.get("AUTH_TYPE"),
                          "HTTP_AUTHORIZATION" in environ)).encode()
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [body]
'''

DOC = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "docs",
                   "django.md")


def documented_config():
    """The configuration of docs/django.md, the toml block after its marker comment."""
    with open(DOC, encoding="utf-8") as fh:
        text = fh.read()
    after = text.split("<!-- tests/test_django.py reads the next toml block -->", 1)[1]
    return re.search(r"```toml\n(.*?)```", after, re.S).group(1)


def run(args, cwd, **env):
    """A Python command of the project (manage.py ...); `env` adds to its environment."""
    full = dict(os.environ, DJANGO_SETTINGS_MODULE="mysite.settings", PYTHONPATH=str(cwd))
    full.update(env)
    done = subprocess.run([sys.executable, *args], cwd=cwd, env=full, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, f"{args} failed:\n{done.stdout}\n{done.stderr}"


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    root = tmp_path_factory.mktemp("djangosite")
    run(["-m", "django", "startproject", "mysite", str(root)], root)
    with open(root / "mysite" / "settings.py", "a") as fh:
        fh.write(SETTINGS_EXTRA)
    run(["manage.py", "migrate", "--noinput", "-v", "0"], root)
    run(["manage.py", "collectstatic", "--noinput", "-v", "0"], root)
    run(["manage.py", "shell", "-c", SETUP_USERS], root)
    (root / "protected").mkdir()
    (root / "protected" / "report.txt").write_text("quarterly numbers\n")
    (root / "whoami.py").write_text(WHOAMI)
    (root / "fastgw.toml").write_text(documented_config())
    return root


def check_admin_login(port, prefix=""):
    """The admin of a site mounted at `prefix`: its login page and hashed CSS (cached for a
    year), a login POST with the form's CSRF token landing on the admin, a wrong password
    refused (the form again, no session)."""
    admin_url = prefix + "/admin/"
    login_url = f"{admin_url}login/?next={admin_url}"
    login = http_request(port, "GET", login_url)
    assert login.status == 200, login.body[:500]
    html = login.body.decode()
    css = re.search(re.escape(prefix) + r'/static/admin/css/base\.[0-9a-f]{12}\.css', html)
    assert css, html[:1000]
    hashed = http_request(port, "GET", css.group(0))
    assert hashed.status == 200 and b"body" in hashed.body
    assert hashed.headers["Cache-Control"] == "public, max-age=31536000, immutable"

    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', html).group(1)
    jar = cookies_of(login)
    form = {"csrfmiddlewaretoken": token, "username": "admin", "password": "admin-pw-1",
            "next": admin_url}
    headers = {"Content-Type": "application/x-www-form-urlencoded",
               "Cookie": "; ".join(f"{k}={v}" for k, v in jar.items())}
    post = http_request(port, "POST", login_url, body=urllib.parse.urlencode(form).encode(),
                        headers=headers)
    assert post.status == 302, post.body[:500]
    assert post.headers["Location"] == admin_url
    jar.update(cookies_of(post))
    assert "sessionid" in jar
    admin = http_request(port, "GET", admin_url,
                         headers={"Cookie": "; ".join(f"{k}={v}" for k, v in jar.items())})
    assert admin.status == 200 and b"Site administration" in admin.body

    form["password"] = "nope"
    bad = http_request(port, "POST", login_url, body=urllib.parse.urlencode(form).encode(),
                       headers=headers)
    assert bad.status == 200 and "sessionid" not in cookies_of(bad)


def test_django_site(start_server, project):
    srv = start_server("--config=" + str(project / "fastgw.toml"), chdir=None, cwd="/")
    port = srv.port

    check_admin_login(port)
    plain = http_request(port, "GET", "/static/admin/css/base.css")
    assert plain.status == 200
    assert plain.headers["Cache-Control"] == "public, max-age=60"

    # Basic auth against Django's users: static and app mounts alike
    none = http_request(port, "GET", "/protected/report.txt")
    assert none.status == 401
    assert none.headers["WWW-Authenticate"].startswith('Basic realm="Protected"')
    assert http_request(port, "GET", "/protected/report.txt",
                        headers=basic_auth("admin", "wrong-pw")).status == 401
    assert http_request(port, "GET", "/protected/report.txt",
                        headers=basic_auth("nobody", "x")).status == 401
    assert http_request(port, "GET", "/protected/report.txt",
                        headers=basic_auth("gone", "gone-pw-1")).status == 401  # inactive user
    ok = http_request(port, "GET", "/protected/report.txt", headers=basic_auth("admin", "admin-pw-1"))
    assert (ok.status, ok.body) == (200, b"quarterly numbers\n")
    who = http_request(port, "GET", "/whoami", headers=basic_auth("alice", "alice-pw-1"))
    assert (who.status, who.body) == (200, b"alice Basic False")

    # the group requirement: alice is in "staff", admin (a superuser) is not
    assert http_request(port, "GET", "/staff-only/report.txt",
                        headers=basic_auth("admin", "admin-pw-1")).status == 401
    assert http_request(port, "GET", "/staff-only/report.txt",
                        headers=basic_auth("alice", "alice-pw-1")).status == 200
    srv.stop()
    for secret in ("admin-pw-1", "alice-pw-1", "wrong-pw"):
        assert secret not in srv.log_text()
