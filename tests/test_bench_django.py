"""bench/django_site.py makes a Django project that really serves the page.

The django benchmark scenarios time this project under every server, so the
generator is checked the way the benchmark uses it: made once (startproject,
migrations, rows, collectstatic, with this interpreter's Django), then served
by fastgw with 4 threads and its static files, and asked for the page at the
offsets the benchmark's load sends and for the stylesheet. The page must hold
the 20 rows the view queried from SQLite, in order, and link the CSS; with
BENCH_STATIC=whitenoise the project serves the CSS itself (the gunicorn and
waitress rows). The harness's own smoke check must accept it too.
"""
import os
import re
import sys

import pytest

from fgwtest import http_request

BENCH = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "bench")
sys.path.insert(0, BENCH)

try:
    import django  # noqa: F401
    import whitenoise  # noqa: F401
except ImportError:  # pragma: no cover - the test extra installs them
    if os.environ.get("CI") == "true":
        pytest.fail("Django and WhiteNoise are in the test extra (pip install -e '.[test]')",
                    pytrace=False)
    pytest.skip("Django or WhiteNoise is not installed", allow_module_level=True)

import django_site  # noqa: E402  (bench/ is not a package)


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    return django_site.make(str(tmp_path_factory.mktemp("benchsite")))


def serve(start_server, site, *extra, env=None):
    return start_server(site.app, "--threads", "4", *extra, chdir=site.root, env=env)


def item_ids(body):
    return [int(n) for n in re.findall(rb'<tr class="item"><td>(\d+)</td>', body)]


def test_the_project_serves_the_page_and_its_css(start_server, site):
    srv = serve(start_server, site, "--static", f"/static/={site.static_root}")
    paths = site.page_paths(4)
    assert len(set(paths)) == 4
    for path in paths:
        resp = http_request(srv.port, "GET", path)
        assert resp.status == 200, (path, resp.body[:300])
        assert django_site.check_page(resp.body) is None, resp.body[:300]
        start = int(path.rpartition("=")[2])
        # the view's 20 rows from SQLite, in order, after the offset
        assert item_ids(resp.body) == list(range(start + 1, start + 21)), path
    css = http_request(srv.port, "GET", site.css)
    assert css.status == 200
    assert css.body == site.css_body
    # the whole table holds the rows the generator wrote
    last = http_request(srv.port, "GET", f"{site.page}?start={django_site.ROWS - 5}")
    assert item_ids(last.body) == list(range(django_site.ROWS - 4, django_site.ROWS + 1))


def test_whitenoise_serves_the_css_when_the_server_does_not(start_server, site):
    srv = serve(start_server, site, env={"BENCH_STATIC": "whitenoise"})
    css = http_request(srv.port, "GET", site.css)
    assert css.status == 200
    assert css.body == site.css_body
    # without WhiteNoise and without --static, Django (DEBUG off) has no such URL
    plain = serve(start_server, site)
    assert http_request(plain.port, "GET", site.css).status == 404


def test_check_page_rejects_what_is_not_the_page():
    page = b'<link href="/static/catalog/site.css">' + b'<tr class="item">' * 20
    assert django_site.check_page(page) is None
    assert "19 item rows" in django_site.check_page(page.replace(b'<tr class="item">', b"", 1))
    assert "does not link" in django_site.check_page(b'<tr class="item">' * 20)


def test_the_harness_smoke_check_accepts_the_project(start_server, site):
    import scenarios
    srv = serve(start_server, site, "--static", f"/static/={site.static_root}")
    check = scenarios._check_django(site)
    assert check("127.0.0.1", srv.port, site.page) is None
    # and it notices a server that does not serve the CSS
    bare = serve(start_server, site)
    assert "404" in check("127.0.0.1", bare.port, site.page)
