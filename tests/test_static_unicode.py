"""Non-ASCII file names are served whatever the locale (LANG=C, no UTF-8 mode, no
locale coercion: the worker's file system encoding is ASCII), the case where a
mod_wsgi deployment fails with UnicodeEncodeError."""
import os

import pytest

from fgwtest import raw_request

C_LOCALE = {"LANG": "C", "LC_ALL": "C", "PYTHONCOERCECLOCALE": "0", "PYTHONUTF8": "0"}

FILES = {
    "文件.txt": "文件 contents\n".encode("utf-8"),
    os.path.join("café", "menu.txt"): b"croissant\n",
    "naïve.css": b"p { margin: 0 }\n",
    "Ελληνικά 😀.txt": b"emoji and space\n",
}


@pytest.fixture(scope="module")
def srv(start_module_server, tmp_path_factory):
    base = tmp_path_factory.mktemp("unicode-tree")
    root = os.path.join(str(base), "root")
    accented_root = os.path.join(str(base), "médias")
    os.makedirs(os.path.join(root, "café"))
    os.makedirs(accented_root)
    for rel, data in FILES.items():
        with open(os.path.join(root, rel), "wb") as fh:
            fh.write(data)
    with open(os.path.join(accented_root, "x.txt"), "wb") as fh:
        fh.write(b"under an accented root and prefix\n")
    # no APP: only mounts (the positional APP is optional with --static/--mount);
    # --keep-locale: the static files are served by their bytes, with no UTF-8 mode
    return start_module_server("--static=/media=" + root,
                               "--static", "/médias=" + accented_root,
                               "--mount", "/info=mounts:info", "--keep-locale", env=C_LOCALE)


def get(srv, target, method="GET"):
    return raw_request(srv.port, method, target)


def test_worker_really_has_an_ascii_locale(srv):
    info = get(srv, "/info").json()
    assert info["utf8_mode"] == 0, info
    assert info["filesystem_encoding"] == "ascii", info


def test_cjk_name(srv):
    resp = get(srv, "/media/%E6%96%87%E4%BB%B6.txt")
    assert resp.status == 200
    assert resp.body == "文件 contents\n".encode("utf-8")
    assert resp.header("Content-Type") == "text/plain; charset=utf-8"


def test_accented_directory_and_file(srv):
    assert get(srv, "/media/caf%C3%A9/menu.txt").body == b"croissant\n"
    resp = get(srv, "/media/na%C3%AFve.css")
    assert resp.status == 200
    assert resp.header("Content-Type") == "text/css; charset=utf-8"


def test_emoji_and_space(srv):
    target = "/media/%CE%95%CE%BB%CE%BB%CE%B7%CE%BD%CE%B9%CE%BA%CE%AC%20%F0%9F%98%80.txt"
    assert get(srv, target).body == b"emoji and space\n"


def test_head_and_range_on_unicode_name(srv):
    resp = get(srv, "/media/%E6%96%87%E4%BB%B6.txt", method="HEAD")
    assert resp.status == 200
    assert resp.header("Content-Length") == str(len("文件 contents\n".encode("utf-8")))


def test_non_ascii_mount_prefix_and_root(srv):
    resp = get(srv, "/m%C3%A9dias/x.txt")
    assert resp.status == 200
    assert resp.body == b"under an accented root and prefix\n"


def test_wrong_encoding_is_404_not_500(srv):
    # café in latin-1 is not the UTF-8 name on disk; undecodable bytes are fine too
    assert get(srv, "/media/caf%E9/menu.txt").status == 404
    assert get(srv, "/media/%FF%FE%FD.txt").status == 404
    assert get(srv, "/media/%E6%96%87").status == 404
    assert get(srv, "/media/%E6%96%87%E4%BB%B6.txt").status == 200
