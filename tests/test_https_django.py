"""Django behind an HTTPS listener (issue 20): request.is_secure() without
SECURE_PROXY_SSL_HEADER, SECURE_SSL_REDIRECT sending the plain listener's clients to
https://, and a secure session cookie, through the real server and Python's ssl."""
import http.client
import os

import pytest

from test_https import client_context, https_port
from tlscerts import Certs

try:
    import django  # noqa: F401
except ImportError:  # pragma: no cover - the test extra installs it
    if os.environ.get("CI") == "true":
        pytest.fail("Django is not installed; it is in the test extra", pytrace=False)
    pytest.skip("Django is not installed (pip install django)", allow_module_level=True)

SITE = '''
from django.conf import settings
from django.http import HttpResponse
from django.urls import path

settings.configure(
    DEBUG=False, SECRET_KEY="test-only-" + "x" * 40, ROOT_URLCONF=__name__,
    ALLOWED_HOSTS=["*"], SECURE_SSL_REDIRECT=True, SESSION_COOKIE_SECURE=True,
    MIDDLEWARE=["django.middleware.security.SecurityMiddleware"],
)


def view(request):
    response = HttpResponse(f"secure={request.is_secure()} scheme={request.scheme} "
                            f"port={request.get_port()}")
    response.set_cookie("sessionid", "abc", secure=settings.SESSION_COOKIE_SECURE)
    return response


urlpatterns = [path("", view)]

from django.core.wsgi import get_wsgi_application  # noqa: E402

application = get_wsgi_application()
'''


def test_django_sees_a_secure_request(start_server, tmp_path):
    certs = Certs(tmp_path)
    (tmp_path / "securesite.py").write_text(SITE)
    srv = start_server("securesite:application", "--bind", "https://127.0.0.1:0",
                       "--bind", "127.0.0.1:0", "--certfile", certs.server_cert,
                       "--keyfile", certs.server_key, chdir=str(tmp_path), default_bind=False)
    port = https_port(srv)
    conn = http.client.HTTPSConnection("localhost", port, timeout=20,
                                       context=client_context(certs))
    conn.request("GET", "/")
    resp = conn.getresponse()
    assert resp.status == 200
    assert resp.read() == f"secure=True scheme=https port={port}".encode()
    cookie = resp.getheader("Set-Cookie")
    assert cookie.startswith("sessionid=abc") and "Secure" in cookie
    conn.close()
    plain = http.client.HTTPConnection("localhost", srv.port, timeout=20)
    plain.request("GET", "/")
    resp = plain.getresponse()
    assert resp.status == 301
    assert resp.getheader("Location") == f"https://localhost:{srv.port}/"
    plain.close()
