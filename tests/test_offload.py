"""Protected downloads: a real Django view using django-sendfile2 decides who may download
a file and fastgw sends it, with the nginx backend (X-Accel-Redirect to an internal
static mount) and the xsendfile backend (X-Sendfile below --x-sendfile-root), checked
with curl: 200 with the file's bytes, 206 for a Range, 304 for If-None-Match, HEAD,
Content-Disposition kept, the X- header never sent, the internal mount not reachable
directly, and an X-Sendfile path outside the roots refused (500, one error line, no
byte of the file).

The Django project is written by the test (no database: the permission is a token in
the query string); one fastgw serves it with each backend.
"""
import os
import re
import subprocess
import textwrap

import pytest

try:
    import django  # noqa: F401
    import django_sendfile  # noqa: F401
except ImportError:  # pragma: no cover - the test extra installs both
    if os.environ.get("CI") == "true":
        pytest.fail("Django or django-sendfile2 is not installed; both are in the test extra "
                    "(pip install -e '.[test]')", pytrace=False)
    pytest.skip("Django and django-sendfile2 are needed (pip install django django-sendfile2)",
                allow_module_level=True)

REPORT = bytes(range(256)) * 64  # 16 KiB, every byte value
ACCENTED = "résumé 2026.txt"

SETTINGS = '''
SECRET_KEY = "offload-test"
DEBUG = False
ALLOWED_HOSTS = ["*"]
ROOT_URLCONF = "dlsite.urls"
INSTALLED_APPS = []
MIDDLEWARE = []
DATABASES = {}
SENDFILE_ROOT = %(root)r
SENDFILE_BACKEND = %(backend)r
SENDFILE_URL = "/protected"
'''

URLS = '''
from django.http import HttpResponse, HttpResponseForbidden
from django.urls import path
from django.conf import settings
from django_sendfile import sendfile


def download(request, name):
    # The application's decision: only a request with the right token gets the file.
    if request.GET.get("token") != "let-me-in":
        return HttpResponseForbidden("no")
    response = sendfile(request, settings.SENDFILE_ROOT + "/" + name, attachment=True)
    response["Cache-Control"] = "private, max-age=60"
    return response


def outside(request):
    # A bug (or an attack through one): a path outside every X-Sendfile root.
    response = HttpResponse(b"the app's own body")
    response["X-Sendfile"] = request.GET["path"]
    return response


urlpatterns = [
    path("download/<str:name>", download),
    path("outside", outside),
]
'''


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    base = tmp_path_factory.mktemp("offload")
    private = base / "private"
    private.mkdir()
    (private / "report.pdf").write_bytes(REPORT)
    (private / ACCENTED).write_bytes("accented name\n".encode())
    outside = base / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_bytes(b"top secret outside the root\n")
    os.symlink(str(outside / "secret.txt"), str(private / "link-out.txt"))
    project = base / "project"
    (project / "dlsite").mkdir(parents=True)
    (project / "dlsite" / "__init__.py").write_text("")
    (project / "dlsite" / "urls.py").write_text(URLS)
    (project / "dlsite" / "wsgi.py").write_text(
        "from django.core.wsgi import get_wsgi_application\n"
        "application = get_wsgi_application()\n")
    for name, backend in (("nginx", "django_sendfile.backends.nginx"),
                          ("xsendfile", "django_sendfile.backends.xsendfile")):
        (project / "dlsite" / ("settings_%s.py" % name)).write_text(
            SETTINGS % {"root": str(private), "backend": backend})
    config = project / "fastgw.toml"
    config.write_text(textwrap.dedent('''
        [[mount]]
        path = "/"
        app = "dlsite.wsgi:application"

        [[mount]]
        path = "/protected"
        static = "%s"
        internal = true
        ''' % private))
    return {"base": base, "private": private, "outside": outside, "project": project,
            "config": config}


@pytest.fixture(scope="module")
def nginx_backend(start_module_server, site):
    return start_module_server(None, "--config", str(site["config"]),
                               "--env", "DJANGO_SETTINGS_MODULE=dlsite.settings_nginx",
                               chdir=str(site["project"]))


@pytest.fixture(scope="module")
def xsendfile_backend(start_module_server, site):
    return start_module_server("dlsite.wsgi:application", "--x-sendfile-root",
                               str(site["private"]),
                               "--env", "DJANGO_SETTINGS_MODULE=dlsite.settings_xsendfile",
                               chdir=str(site["project"]))


def fetch(curl, srv, target, *args):
    """curl -i: (status, {lower-case name: [values]}, body) of the last response."""
    proc = curl("-i", *args, srv.url + target)
    assert proc.returncode == 0, proc.stderr
    raw = proc.stdout
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers.setdefault(name.strip().lower(), []).append(value.strip())
    return status, headers, body


BACKENDS = ["nginx_backend", "xsendfile_backend"]


@pytest.mark.parametrize("backend", BACKENDS)
def test_allowed_download_is_the_file(request, curl, backend):
    srv = request.getfixturevalue(backend)
    status, headers, body = fetch(curl, srv, "/download/report.pdf?token=let-me-in")
    assert status == 200
    assert body == REPORT
    assert headers["content-length"] == [str(len(REPORT))]
    assert headers["content-type"] == ["application/pdf"]
    assert headers["content-disposition"] == ['attachment; filename="report.pdf"']
    assert headers["cache-control"] == ["private, max-age=60"]
    assert headers["accept-ranges"] == ["bytes"]
    assert re.fullmatch(r'"[0-9a-f]+-[0-9a-f]+"', headers["etag"][0]), headers["etag"]
    assert "last-modified" in headers
    assert "x-accel-redirect" not in headers and "x-sendfile" not in headers


@pytest.mark.parametrize("backend", BACKENDS)
def test_refused_download_is_the_application_answer(request, curl, backend):
    srv = request.getfixturevalue(backend)
    status, headers, body = fetch(curl, srv, "/download/report.pdf")
    assert (status, body) == (403, b"no")


@pytest.mark.parametrize("backend", BACKENDS)
def test_range_conditional_and_head(request, curl, backend):
    srv = request.getfixturevalue(backend)
    target = "/download/report.pdf?token=let-me-in"
    status, headers, body = fetch(curl, srv, target, "-r", "1000-1099")
    assert status == 206
    assert body == REPORT[1000:1100]
    assert headers["content-range"] == ["bytes 1000-1099/%d" % len(REPORT)]
    assert headers["content-disposition"] == ['attachment; filename="report.pdf"']
    etag = fetch(curl, srv, target)[1]["etag"][0]
    status, headers, body = fetch(curl, srv, target, "-H", "If-None-Match: " + etag)
    assert (status, body) == (304, b"")
    assert headers["etag"] == [etag]
    assert headers["cache-control"] == ["private, max-age=60"]
    status, headers, body = fetch(curl, srv, target, "-I")
    assert (status, body) == (200, b"")
    assert headers["content-length"] == [str(len(REPORT))]
    assert headers["content-disposition"] == ['attachment; filename="report.pdf"']
    # Several ranges: multipart/byteranges, the parts typed as the file.
    status, headers, body = fetch(curl, srv, target, "-r", "0-9,100-109")
    assert status == 206
    assert headers["content-type"][0].startswith("multipart/byteranges; boundary=")
    assert b"Content-Type: application/pdf" in body and REPORT[100:110] in body


@pytest.mark.parametrize("backend", BACKENDS)
def test_accented_file_name(request, curl, backend):
    srv = request.getfixturevalue(backend)
    status, headers, body = fetch(curl, srv, "/download/r%C3%A9sum%C3%A9%202026.txt?token=let-me-in")
    if backend == "xsendfile_backend":
        # Django writes a non-Latin-1 X-Sendfile value as an RFC 2047 encoded word, which
        # names no file (mod_xsendfile fails the same way): refused, never guessed.
        assert status in (404, 500)
        return
    assert (status, body) == (200, b"accented name\n")
    assert "filename*=UTF-8''r%C3%A9sum%C3%A9%202026.txt" in headers["content-disposition"][0]


def test_internal_mount_is_not_reachable_directly(curl, nginx_backend):
    status, _, body = fetch(curl, nginx_backend, "/protected/report.pdf")
    assert status == 404
    assert REPORT[:64] not in body
    status, _, _ = fetch(curl, nginx_backend, "/protected/")
    assert status == 404


def test_x_sendfile_outside_the_roots_is_refused(curl, site, xsendfile_backend):
    srv = xsendfile_backend
    secret = site["outside"] / "secret.txt"
    for path in (str(secret), str(site["private"]) + "/../outside/secret.txt", "relative.txt"):
        mark = srv.log_mark()
        status, headers, body = fetch(curl, srv, "/outside?path=" + path.replace("/", "%2F"))
        assert status == 500
        assert b"secret" not in body and b"the app's own body" not in body
        assert "x-sendfile" not in headers
        line = srv.wait_for_log(r"X-Sendfile .* is not below the mount's x_sendfile_roots",
                                start=mark)
        assert len([l for l in srv.log_lines()[mark:] if "X-Sendfile" in l]) == 1, line
    # A symlink below the root that leads out of it is not followed.
    status, _, body = fetch(curl, srv, "/download/link-out.txt?token=let-me-in")
    assert status == 404
    assert b"secret" not in body


def test_x_sendfile_without_roots_is_refused(start_server, site, curl):
    """Without --x-sendfile-root an app's X-Sendfile sends nothing."""
    srv = start_server("dlsite.wsgi:application",
                       "--env", "DJANGO_SETTINGS_MODULE=dlsite.settings_xsendfile",
                       chdir=str(site["project"]))
    status, _, body = fetch(curl, srv, "/download/report.pdf?token=let-me-in")
    assert status == 500 and REPORT[:64] not in body
    srv.wait_for_log(r"x_sendfile_roots \(none: set x_sendfile_roots or --x-sendfile-root\)")


def test_check_shows_and_validates_the_keys(site, tmp_path):
    from fgwtest import fastgw_command

    proc = subprocess.run(fastgw_command() + ["check", "--config", str(site["config"]),
                                              "--x-sendfile-root", str(site["private"])],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout.decode()
    assert "internal: X-Accel-Redirect only" in out
    assert "x_sendfile_roots=[%r]" % str(site["private"]) in out
    bad = tmp_path / "bad.toml"
    bad.write_text('[[mount]]\npath = "/"\napp = "x:y"\ninternal = true\n')
    proc = subprocess.run(fastgw_command() + ["check", "--config", str(bad)],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60)
    assert proc.returncode == 1  # a ConfigError, as for every other bad key
    assert b"internal only applies to static mounts" in proc.stderr
    proc = subprocess.run(fastgw_command() + ["check", "x:y", "--x-sendfile-root",
                                              str(tmp_path / "missing")],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60)
    assert proc.returncode == 1
    assert b"is not a directory" in proc.stderr


# --------------------------------------------------------------------------
# a plain WSGI application: late start_response, redirect loops, threads, process groups


def plain_config(tmp_path, site, group):
    """offloadapp at "/" (in a process group when `group`), the internal mount."""
    lines = ['[[mount]]', 'path = "/"', 'app = "offloadapp:application"']
    if group:
        lines += ['group = "downloads"', '', '[[group]]', 'name = "downloads"', 'processes = 1']
    lines += ['', '[[mount]]', 'path = "/protected"', 'static = "%s"' % site["private"],
              'internal = true']
    path = tmp_path / "plain.toml"
    path.write_text("\n".join(lines) + "\n")
    return str(path)


@pytest.mark.parametrize("mode", ["inline", "threads", "group"])
def test_plain_app_x_accel_redirect(start_server, site, curl, tmp_path, mode):
    extra = ["--threads", "2"] if mode == "threads" else []
    srv = start_server(None, "--config", plain_config(tmp_path, site, mode == "group"), *extra)
    for route in ("/accel", "/lazy", "/write"):
        status, headers, body = fetch(curl, srv, route + "?to=/protected/report.pdf")
        assert (status, body) == (200, REPORT), (route, headers)
        assert headers["content-disposition"] == ["attachment"]
        assert headers["content-type"] == ["text/plain"]  # the application's wins
        assert "x-accel-redirect" not in headers
        status, headers, body = fetch(curl, srv, route + "?to=/protected/report.pdf",
                                      "-r", "-16")
        assert (status, body) == (206, REPORT[-16:])
        # A percent-encoded URL, as django-sendfile2 writes it.
        status, _, body = fetch(curl, srv, route + "?to=/protected/r%25C3%25A9sum%25C3%25A9"
                                                    "%25202026.txt")
        assert (status, body) == (200, b"accented name\n")
        status, _, body = fetch(curl, srv, route + "?to=/protected/missing.pdf")
        assert status == 404 and b"own body" not in body
    assert fetch(curl, srv, "/protected/report.pdf")[0] == 404
    # An application redirecting to itself forever: given up after 10, one error line.
    mark = srv.log_mark()
    status, _, body = fetch(curl, srv, "/again")
    assert status == 500
    srv.wait_for_log(r"more than 10 internal redirects in a row", start=mark)
    status, _, _ = fetch(curl, srv, "/accel?to=@named")
    assert status == 500
    srv.wait_for_log(r"X-Accel-Redirect '@named' .* is not a URL path", start=mark)
    assert srv.stop() == 0


def test_server_key_relative_to_the_file(site, tmp_path):
    """[server] x_sendfile_root, relative to the file's directory, reaches the app mounts."""
    from fgwtest import fastgw_command

    (tmp_path / "files").mkdir()
    config = tmp_path / "fastgw.toml"
    config.write_text('[server]\nx_sendfile_root = ["files"]\n\n'
                      '[[mount]]\npath = "/"\napp = "x:y"\n\n'
                      '[[mount]]\npath = "/own"\napp = "x:z"\nx_sendfile_roots = ["/"]\n')
    proc = subprocess.run(fastgw_command() + ["check", "--config", str(config)],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout.decode()
    assert "x_sendfile_roots=[%r]" % str(tmp_path / "files") in out
    assert "x_sendfile_roots=['/']" in out


def test_explain_says_an_internal_mount_answers_404(site):
    from fgwtest import fastgw_command

    proc = subprocess.run(fastgw_command() + ["explain", "/protected/report.pdf", "--config",
                                              str(site["config"])],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout.decode()
    assert "internal mount; a client asking for this URL gets 404 Not Found" in out
