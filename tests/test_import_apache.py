"""`fastgw import-apache` on the configuration blocks of Django's "How to use Django with
Apache and mod_wsgi", pointed at a real project (startproject, migrate, collectstatic,
users and a group, wsgi.py exporting Django's modwsgi hooks): the TOML it prints is
accepted by `fastgw check` and, served, answers as the Apache site would (the admin,
robots.txt, static files, a /secret login with and without a group). Then the errors.
"""
import os
import subprocess
import sys

import pytest

from fgwtest import basic_auth, fastgw_command, http_request, subprocess_env

try:
    import django  # noqa: F401
except ImportError:  # pragma: no cover - the test extra installs it
    if os.environ.get("CI") == "true":
        pytest.fail("Django is not installed; it is in the test extra", pytrace=False)
    pytest.skip("Django is not installed (pip install django)", allow_module_level=True)

# The blocks of Django's guide, with its /path/to placeholders.
BASIC = '''
WSGIScriptAlias / /path/to/mysite.com/mysite/wsgi.py
WSGIPythonHome /path/to/venv
WSGIPythonPath /path/to/mysite.com

<Directory /path/to/mysite.com/mysite>
<Files wsgi.py>
Require all granted
</Files>
</Directory>
'''

DAEMON = '''
WSGIDaemonProcess example.com python-home=/path/to/venv python-path=/path/to/mysite.com
WSGIProcessGroup example.com
'''

FILES = '''
Alias /robots.txt /path/to/mysite.com/static/robots.txt
Alias /favicon.ico /path/to/mysite.com/static/favicon.ico

Alias /media/ /path/to/mysite.com/media/
Alias /static/ /path/to/mysite.com/static/

<Directory /path/to/mysite.com/static>
Require all granted
</Directory>

<Directory /path/to/mysite.com/media>
Require all granted
</Directory>

WSGIScriptAlias / /path/to/mysite.com/mysite/wsgi.py

<Directory /path/to/mysite.com/mysite>
<Files wsgi.py>
Require all granted
</Files>
</Directory>
'''

AUTH = '''
WSGIScriptAlias / /path/to/mysite.com/mysite/wsgi.py
WSGIPythonPath /path/to/mysite.com

WSGIProcessGroup %{GLOBAL}
WSGIApplicationGroup %{GLOBAL}

<Location "/secret">
    AuthType Basic
    AuthName "Top Secret"
    Require valid-user
    AuthBasicProvider wsgi
    WSGIAuthUserScript /path/to/mysite.com/mysite/wsgi.py
</Location>
'''

AUTH_GROUP = '''
WSGIAuthGroupScript /path/to/mysite.com/mysite/wsgi.py

<Location "/secret">
    AuthType Basic
    AuthName "Top Secret"
    AuthBasicProvider wsgi
    WSGIAuthUserScript /path/to/mysite.com/mysite/wsgi.py
    WSGIAuthGroupScript /path/to/mysite.com/mysite/wsgi.py
    Require group secret-agents
    Require valid-user
</Location>
'''

SETTINGS_EXTRA = '''
ALLOWED_HOSTS = ["*"]
DEBUG = False
STATIC_ROOT = BASE_DIR / "static"
MEDIA_ROOT = BASE_DIR / "media"
'''

# The page /secret/ shows: who Django was told logged in, and the path split it saw.
URLS_EXTRA = '''
from django.http import JsonResponse

def secret(request):
    return JsonResponse({"user": request.META.get("REMOTE_USER"),
                         "script_name": request.META["SCRIPT_NAME"],
                         "path_info": request.META["PATH_INFO"]})

urlpatterns.append(path("secret/", secret))
'''

# Django's guide: wsgi.py exports the modwsgi hooks, so WSGIAuthUserScript can name it.
WSGI_EXTRA = '''
from django.contrib.auth.handlers.modwsgi import check_password, groups_for_user  # noqa
'''

SETUP_USERS = '''
from django.contrib.auth.models import Group, User
User.objects.create_user("agent", "agent@example.com", "agent-pw-1").groups.add(
    Group.objects.create(name="secret-agents"))
User.objects.create_user("visitor", "visitor@example.com", "visitor-pw-1")
'''


def manage(site, *args):
    done = subprocess.run([sys.executable, "manage.py", *args], cwd=site, capture_output=True,
                          text=True, timeout=120,
                          env=dict(os.environ, DJANGO_SETTINGS_MODULE="mysite.settings"))
    assert done.returncode == 0, f"{args} failed:\n{done.stdout}\n{done.stderr}"


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    root = tmp_path_factory.mktemp("apache")
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True,
                   timeout=120)
    site = root / "mysite.com"
    site.mkdir()
    subprocess.run([sys.executable, "-m", "django", "startproject", "mysite", str(site)],
                   check=True, timeout=120)
    for name, extra in (("settings.py", SETTINGS_EXTRA), ("urls.py", URLS_EXTRA),
                        ("wsgi.py", WSGI_EXTRA)):
        with open(site / "mysite" / name, "a") as fh:
            fh.write(extra)
    manage(site, "migrate", "--noinput", "-v", "0")
    manage(site, "collectstatic", "--noinput", "-v", "0")
    manage(site, "shell", "-c", SETUP_USERS)
    (site / "static" / "robots.txt").write_text("User-agent: *\nDisallow: /admin/\n")
    (site / "static" / "favicon.ico").write_bytes(b"\0\0\1\0fake icon")
    (site / "media").mkdir()
    return root


def apache_file(root, text, name="mysite.conf"):
    path = root / name
    path.write_text(text.replace("/path/to/", f"{root}/"))
    return path


def fastgw(*args, cwd=None):
    return subprocess.run(fastgw_command() + list(args), capture_output=True, text=True,
                          timeout=60, cwd=cwd, env=subprocess_env())


def imported(root, text, name="fastgw.toml"):
    """The TOML import-apache prints for `text`, written to root/name and checked."""
    done = fastgw("import-apache", str(apache_file(root, text)))
    assert done.returncode == 0, done.stderr
    toml = root / name
    toml.write_text(done.stdout)
    checked = fastgw("check", "--config", str(toml))
    assert checked.returncode == 0, checked.stderr + "\n" + done.stdout
    return done.stdout


def test_basic_configuration(project):
    out = imported(project, BASIC)
    site = f"{project}/mysite.com"
    assert f'pythonpath = ["{site}"]' in out
    assert 'path = "/"\napp = "mysite.wsgi:application"' in out
    assert f"install fastgw into that virtualenv and run {project}/venv/bin/fastgw" in out
    assert "mysite.conf:8: Require all granted: nothing to do" in out


def test_daemon_mode(project):
    out = imported(project, BASIC.replace("WSGIPythonHome /path/to/venv\n", "") + DAEMON)
    assert ('[[group]]\nname = "example.com"\n'
            f'python_path = ["{project}/mysite.com"]\nvenv = "{project}/venv"') in out
    assert 'app = "mysite.wsgi:application"\ngroup = "example.com"' in out
    assert "mod_wsgi's default is 15 threads" in out


def test_files_and_a_script_on_no_python_path(project):
    out = imported(project, FILES)
    for url, target in (("/robots.txt", "static/robots.txt"), ("/favicon.ico", "static/favicon.ico"),
                        ("/media/", "media"), ("/static/", "static")):
        assert f'path = "{url}"\nstatic = "{project}/mysite.com/{target}"' in out
    # no WSGIPythonPath: the project directory becomes the python path, and it says so
    assert f'pythonpath = ["{project}/mysite.com"]' in out
    assert f"wsgi.py is on no python path; {project}/mysite.com was added to [server]" in out


def test_embedded_site_with_a_login(start_server, project):
    imported(project, FILES + AUTH, "embedded.toml")
    srv = start_server("", "--config", str(project / "embedded.toml"), chdir=None,
                       cwd="/")
    port = srv.port
    assert http_request(port, "GET", "/admin/login/").status == 200
    robots = http_request(port, "GET", "/robots.txt")
    assert (robots.status, robots.body) == (200, b"User-agent: *\nDisallow: /admin/\n")
    css = http_request(port, "GET", "/static/admin/css/base.css")
    assert css.status == 200 and b"body" in css.body
    refused = http_request(port, "GET", "/secret/")
    assert refused.status == 401
    assert refused.headers["WWW-Authenticate"] == 'Basic realm="Top Secret", charset="UTF-8"'
    assert http_request(port, "GET", "/secret/", headers=basic_auth("visitor", "wrong")).status == 401
    seen = http_request(port, "GET", "/secret/", headers=basic_auth("visitor", "visitor-pw-1"))
    assert seen.status == 200
    # served by the app at "/": its SCRIPT_NAME, not the rule's
    assert seen.json() == {"user": "visitor", "script_name": "", "path_info": "/secret/"}


def test_daemon_site_with_a_group_login(start_server, project):
    out = imported(project, FILES + DAEMON + AUTH_GROUP, "daemon.toml")
    assert ('path = "/secret"\nauth = {"realm" = "Top Secret", "check_password" = '
            '"mysite.wsgi:check_password", "groups_for_user" = "mysite.wsgi:groups_for_user", '
            '"require_group" = "secret-agents", "group" = "example.com"}') in out
    assert "Apache 2.4 lets either one suffice" in out
    srv = start_server("", "--config", str(project / "daemon.toml"), chdir=None,
                       cwd="/")
    port = srv.port
    assert http_request(port, "GET", "/admin/login/").status == 200
    assert http_request(port, "GET", "/favicon.ico").body == b"\0\0\1\0fake icon"
    assert http_request(port, "GET", "/secret/").status == 401
    outsider = http_request(port, "GET", "/secret/", headers=basic_auth("visitor", "visitor-pw-1"))
    assert outsider.status == 401
    agent = http_request(port, "GET", "/secret/", headers=basic_auth("agent", "agent-pw-1"))
    assert agent.status == 200
    assert agent.json()["user"] == "agent"


def test_every_unmapped_directive_is_a_comment_naming_its_line(project):
    text = ('<VirtualHost *:80>\n    ServerName www.example.com\n'
            '    WSGIScriptAlias / /path/to/mysite.com/mysite/wsgi.py \\\n'
            '        process-group=example.com application-group=%{GLOBAL}\n'
            '    WSGIDaemonProcess example.com lang=en_US.UTF-8 locale=en_US.UTF-8 \\\n'
            '        processes=2 threads=15 python-path=/path/to/mysite.com display-name=site\n'
            '    Options -Indexes\n    KeepAlive On\n</VirtualHost>\n')
    out = imported(project, text)
    conf = project / "mysite.conf"
    assert f"# {conf}:1: <VirtualHost *:80>: its contents are translated" in out
    assert f"# {conf}:2: ServerName www.example.com: not translated" in out
    assert f"# {conf}:3: WSGIScriptAlias / {project}" in out  # joined continuation line
    assert "application-group: fastgw runs each application in the main interpreter" in out
    assert f"# {conf}:5: WSGIDaemonProcess" in out and "lang=en_US.UTF-8: not needed" in out
    assert "option display-name=site not translated" in out
    assert f"# {conf}:8: KeepAlive On: not translated" in out
    assert "processes = 2\nthreads = 15" in out and 'group = "example.com"' in out


@pytest.mark.parametrize("text, message", [
    ("WSGIScriptAlias /\n", "mysite.conf:1: WSGIScriptAlias /: missing arguments; write "
                           "WSGIScriptAlias URL /path/to/wsgi.py"),
    ("Alias /static/\n", "mysite.conf:1: Alias /static/: missing arguments"),
    ("<Directory /srv>\nRequire all granted\n", "mysite.conf:1: <Directory /srv> is never "
                                               "closed; add </Directory>"),
    ("<Directory /srv>\n</Files>\n", "mysite.conf:2: </Files> closes <Directory> opened at "),
    ("</Location>\n", "mysite.conf:1: </Location> closes nothing"),
    ('Alias "/x /srv\n', "mysite.conf:1: unterminated \""),
    ("WSGIDaemonProcess d threads=many\nAlias /s /srv\n", "threads=many: must be a whole number"),
    ("WSGIProcessGroup nosuch\nWSGIScriptAlias / /srv/mysite/wsgi.py\n",
     "mysite.conf:1: WSGIProcessGroup nosuch: no WSGIDaemonProcess is named 'nosuch'"),
    ("ServerName x\n", "no WSGIScriptAlias or Alias: nothing to serve"),
    ('Alias / /srv\n<Location "/secret">\nAuthType Basic\nAuthBasicProvider wsgi\n'
     'Require user alice\n</Location>\n', "mysite.conf:5: Require user alice: cannot be "
                                           "translated"),
    ('Alias / /srv\n<Location "/secret">\nAuthType Basic\nAuthBasicProvider file\n'
     'Require valid-user\n</Location>\n', "AuthBasicProvider file: only the wsgi provider"),
    ('Alias / /srv\n<Location "/secret">\nAuthType Basic\nAuthBasicProvider wsgi\n'
     'Require valid-user\n</Location>\n', "AuthBasicProvider wsgi but no WSGIAuthUserScript"),
    ('Alias / /srv\n<Directory "/srv/secret">\nAuthType Basic\nRequire valid-user\n'
     '</Directory>\n', "mysite.conf:2: a login in <Directory /srv/secret>"),
])
def test_errors_name_the_line_and_exit_2(tmp_path, text, message):
    conf = tmp_path / "mysite.conf"
    conf.write_text(text)
    done = fastgw("import-apache", str(conf))
    assert done.returncode == 2, done.stdout
    assert done.stdout == ""
    assert message in done.stderr, done.stderr
    assert done.stderr.startswith("fastgw: error: "), done.stderr


def test_unreadable_file(tmp_path):
    done = fastgw("import-apache", str(tmp_path / "missing.conf"))
    assert done.returncode == 2
    assert f"{tmp_path}/missing.conf: cannot read it: No such file or directory" in done.stderr
