"""The Django walkthrough of docs/django.md, end to end, under legacy locales.

A real project (startproject, migrate, collectstatic with ManifestStaticFilesStorage,
a superuser, a user in a "staff" group, an upload view living in the project's own
virtualenv) served below /mysite by a process group with that virtualenv, with
static, media, robots.txt and favicon.ico mounts and two directories protected by
Django's own modwsgi hooks run in the group. The server is started under a Latin-1
locale, where a plain Python process cannot even create a file with a non-ASCII
name, and under LANG=C (PYTHONCOERCECLOCALE=0): the upload named NAME below must
be saved and served back either way.
"""
import json
import os
import re
import subprocess
import sys

import pytest

from fgwtest import basic_auth, http_request
from test_django import check_admin_login, run

try:
    import django  # noqa: F401
except ImportError:  # pragma: no cover - the test extra installs it
    if os.environ.get("CI") == "true":
        pytest.fail("Django is not installed; it is in the test extra", pytrace=False)
    pytest.skip("Django is not installed (pip install django)", allow_module_level=True)

NAME = "Ωmega-日本-€.txt"
LATIN1 = "en_US.ISO-8859-1"
LOCALES = {
    "latin-1": {"LANG": LATIN1, "LC_ALL": LATIN1},
    "C": {"LANG": "C", "LC_ALL": "C", "PYTHONCOERCECLOCALE": "0"},
}

SETTINGS_EXTRA = '''
ALLOWED_HOSTS = ["*"]
DEBUG = False
STATIC_URL = "/mysite/static/"
STATIC_ROOT = BASE_DIR / "staticroot"
MEDIA_URL = "/mysite/media/"
MEDIA_ROOT = BASE_DIR / "media"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.ManifestStaticFilesStorage"},
}
'''

URLS_EXTRA = '''
from mysite_uploads import upload
urlpatterns.append(path("upload/", upload))
'''

# Lives in the project's virtualenv only: the group must import it from there.
UPLOADS = '''
import sys
from django.core.files.storage import default_storage
from django.http import JsonResponse
from django.views.decorators.csrf import csrf_exempt


@csrf_exempt
def upload(request):
    uploaded = request.FILES["file"]
    name = default_storage.save(uploaded.name, uploaded)
    return JsonResponse({"name": name, "url": default_storage.url(name),
                         "encoding": sys.getfilesystemencoding()})
'''

SETUP_USERS = '''
from django.contrib.auth.models import Group, User
User.objects.create_superuser("admin", "admin@example.com", "admin-pw-1")
alice = User.objects.create_user("alice", "alice@example.com", "alice-pw-1")
alice.groups.add(Group.objects.create(name="staff"))
'''

DOC = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "docs",
                   "django.md")


def documented_config(venv):
    with open(DOC, encoding="utf-8") as fh:
        text = fh.read()
    after = text.split("<!-- tests/test_django_walkthrough.py reads the next toml block -->", 1)[1]
    block = re.search(r"```toml\n(.*?)```", after, re.S).group(1)
    assert "/srv/venvs/mysite" in block
    return ('[server]\nbind = "127.0.0.1:0"\n'
            + block.replace("/srv/venvs/mysite", venv).replace("[server]\n", "", 1))


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    root = tmp_path_factory.mktemp("walkthrough")
    venv = root / "venvs" / "mysite"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True,
                   timeout=120)
    packages = venv / "lib" / ("python%d.%d" % sys.version_info[:2]) / "site-packages"
    (packages / "mysite_uploads.py").write_text(UPLOADS)
    site = root / "mysite.com"
    site.mkdir()
    run(["-m", "django", "startproject", "mysite", str(site)], site)
    with open(site / "mysite" / "settings.py", "a") as fh:
        fh.write(SETTINGS_EXTRA)
    with open(site / "mysite" / "urls.py", "a") as fh:
        fh.write(URLS_EXTRA)
    run(["manage.py", "migrate", "--noinput", "-v", "0"], site, PYTHONPATH=f"{site}:{packages}")
    run(["manage.py", "collectstatic", "--noinput", "-v", "0"], site,
        PYTHONPATH=f"{site}:{packages}")
    run(["manage.py", "shell", "-c", SETUP_USERS], site, PYTHONPATH=f"{site}:{packages}")
    (site / "staticroot" / "robots.txt").write_text("User-agent: *\nDisallow: /mysite/admin/\n")
    (site / "staticroot" / "favicon.ico").write_bytes(b"\0\0\1\0fake icon")
    (site / "media").mkdir()
    (site / "protected").mkdir()
    (site / "protected" / "report.txt").write_text("quarterly numbers\n")
    (site / "fastgw.toml").write_text(documented_config(str(venv)))
    return site


def legacy_locale(name):
    """The environment of the locale; the Latin-1 one checked to really be legacy."""
    env = LOCALES[name]
    if name == "C":
        # Python (PEP 540) turns UTF-8 mode on by itself under the C locale.
        return env
    # The name as ASCII escapes: from argv the probe would get Latin-1 mojibake of its
    # UTF-8 bytes, which Latin-1 encodes without complaint.
    probe = subprocess.run(
        [sys.executable, "-c", "import sys; print(sys.getfilesystemencoding()); "
         f"open({ascii(os.path.join('/tmp', NAME))}, 'w')"],
        env=dict(os.environ, **env), capture_output=True, text=True, timeout=60)
    if probe.stdout.strip() != "iso8859-1":
        message = (f"the {LATIN1} locale is not available here (filesystem encoding "
                   f"{probe.stdout.strip()!r}); generate it: localedef -i en_US -f ISO-8859-1 "
                   f"{LATIN1}")
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    # What Django's guide warns about: a plain process cannot save the upload's name.
    assert "UnicodeEncodeError" in probe.stderr, probe.stderr
    return env


def multipart(field, filename, data):
    boundary = "fastgw-walkthrough-boundary"
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"{field}\"; "
            f"filename=\"{filename}\"\r\nContent-Type: text/plain\r\n\r\n").encode("utf-8")
    body += data + f"\r\n--{boundary}--\r\n".encode()
    return body, {"Content-Type": f"multipart/form-data; boundary={boundary}"}


@pytest.mark.parametrize("locale_name", sorted(LOCALES))
def test_walkthrough_under_a_legacy_locale(start_server, project, locale_name):
    env = legacy_locale(locale_name)
    srv = start_server("", "--config", str(project / "fastgw.toml"), default_bind=False,
                       default_workers=False, chdir=None, cwd="/", env=env)
    srv.wait_for_workers(4)
    port = srv.port

    # the admin below /mysite: login page, hashed CSS, CSRF login, a wrong password
    check_admin_login(port, "/mysite")

    # an upload with a non-ASCII name, saved by Django and served back by the media mount
    data = ("uploaded under %s\n" % locale_name).encode()
    body, headers = multipart("file", NAME, data)
    saved = http_request(port, "POST", "/mysite/upload/", body=body, headers=headers)
    assert saved.status == 200, saved.body[:2000]
    answer = json.loads(saved.body)
    assert answer["encoding"] == "utf-8"
    assert answer["name"].startswith("Ωmega-日本-€") and answer["name"].endswith(".txt")
    assert answer["url"].startswith("/mysite/media/%CE%A9mega")
    back = http_request(port, "GET", answer["url"])
    assert (back.status, back.body) == (200, data)
    assert os.path.exists(os.path.join(str(project / "media"), answer["name"]).encode("utf-8"))

    # robots.txt and favicon.ico at the root of the host
    robots = http_request(port, "GET", "/robots.txt")
    assert robots.status == 200 and b"Disallow: /mysite/admin/" in robots.body
    assert http_request(port, "GET", "/favicon.ico").body == b"\0\0\1\0fake icon"

    # Basic auth against Django's users, checked in the group: by user, then by group
    assert http_request(port, "GET", "/mysite/protected/report.txt").status == 401
    assert http_request(port, "GET", "/mysite/protected/report.txt",
                        headers=basic_auth("admin", "nope")).status == 401
    ok = http_request(port, "GET", "/mysite/protected/report.txt",
                      headers=basic_auth("admin", "admin-pw-1"))
    assert (ok.status, ok.body) == (200, b"quarterly numbers\n")
    assert http_request(port, "GET", "/mysite/staff-only/report.txt",
                        headers=basic_auth("admin", "admin-pw-1")).status == 401
    assert http_request(port, "GET", "/mysite/staff-only/report.txt",
                        headers=basic_auth("alice", "alice-pw-1")).status == 200
    srv.stop()
    for secret in ("admin-pw-1", "alice-pw-1"):
        assert secret not in srv.log_text()
