"""The demo application of the README's Quick start: `fastgw serve fastgw.demo:app`."""
import html

from fastgw import __version__


def app(environ, start_response):
    rows = "".join(
        f"<tr><td>{html.escape(k)}</td><td>{html.escape(str(environ[k]))}</td></tr>"
        for k in sorted(environ) if k.isupper())
    body = (f"<!doctype html><title>fastgw</title><h1>Hello from fastgw {__version__}</h1>"
            f"<p>This page is a WSGI application. Its environ:</p><table>{rows}</table>\n")
    data = body.encode("utf-8")
    start_response("200 OK", [("Content-Type", "text/html; charset=utf-8"),
                              ("Content-Length", str(len(data)))])
    return [data]
