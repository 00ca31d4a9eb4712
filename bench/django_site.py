"""Make the Django project the `django` benchmark scenarios serve.

    python django_site.py DEST        # make it with this python's Django; print its paths

Strategy: everything a user would do by hand, done by the real tools, so the
page the servers answer is Django's whole request path (URL resolver,
middleware, ORM, template engine) and not a stand-in. `django-admin
startproject`, then an app `catalog` with one model, `makemigrations`,
`migrate`, a few hundred rows in SQLite through the ORM, `collectstatic`.
The page (/items/?start=N) queries 20 rows from N and renders them with a
template that links one CSS file; settings are startproject's with the
changes production needs (DEBUG off, ALLOWED_HOSTS, STATIC_ROOT) and
WhiteNoise's middleware when BENCH_STATIC=whitenoise is in the environment,
for servers that serve no static files themselves.
"""
import os
import subprocess
import sys
from dataclasses import dataclass

PROJECT = "benchsite"
ROWS = 300
PAGE_SIZE = 20
CSS_PATH = "/static/catalog/site.css"

MODELS = '''\
from django.db import models


class Item(models.Model):
    name = models.CharField(max_length=80)
    description = models.TextField()
    price_cents = models.IntegerField()
    in_stock = models.BooleanField(default=True)

    class Meta:
        ordering = ["id"]
'''

VIEWS = f'''\
from django.shortcuts import render

from .models import Item


def items(request):
    try:
        start = max(0, int(request.GET.get("start", "0")))
    except ValueError:
        start = 0
    rows = Item.objects.filter(id__gt=start)[:{PAGE_SIZE}]
    return render(request, "catalog/items.html", {{"items": rows, "start": start}})
'''

URLS = '''\
from django.urls import path

from catalog import views

urlpatterns = [path("items/", views.items, name="items")]
'''

TEMPLATE = '''\
{% load static %}<!DOCTYPE html>
<html lang="en">
<head><meta charset="utf-8"><title>Items from {{ start }}</title>
<link rel="stylesheet" href="{% static 'catalog/site.css' %}"></head>
<body>
<h1>Items from {{ start }}</h1>
<table>
<tr><th>#</th><th>name</th><th>description</th><th>price</th><th>stock</th></tr>
{% for item in items %}<tr class="item"><td>{{ item.id }}</td><td>{{ item.name|title }}</td>
<td>{{ item.description|truncatewords:12 }}</td>
<td>{{ item.price_cents|floatformat:0 }} cents</td>
<td>{{ item.in_stock|yesno:"yes,no" }}</td></tr>
{% endfor %}</table>
</body>
</html>
'''

CSS = '''\
body { font-family: sans-serif; margin: 2em; color: #222; }
table { border-collapse: collapse; width: 100%; }
th, td { border-bottom: 1px solid #ccc; padding: 0.3em 0.6em; text-align: left; }
tr.item:nth-child(even) { background: #f4f4f4; }
'''

SETTINGS_EXTRA = '''
# --- the benchmark's changes to startproject's settings ---
import os as _os
DEBUG = False
ALLOWED_HOSTS = ["*"]
INSTALLED_APPS += ["catalog"]
STATIC_ROOT = BASE_DIR / "staticroot"
if _os.environ.get("BENCH_STATIC") == "whitenoise":
    MIDDLEWARE.insert(1, "whitenoise.middleware.WhiteNoiseMiddleware")
'''

FILL = f'''\
from catalog.models import Item
words = "alpha bravo charlie delta echo foxtrot golf hotel india juliet kilo lima".split()
Item.objects.all().delete()
Item.objects.bulk_create(
    Item(name=f"{{words[i % 12]}} {{words[i * 7 % 12]}} {{i}}",
         description=" ".join(words[(i + k) % 12] for k in range(30)),
         price_cents=(i * 7919) % 100000, in_stock=i % 5 != 0)
    for i in range({ROWS}))
'''


@dataclass
class Site:
    root: str             # the project directory: the servers' --chdir / pythonpath
    wsgi_file: str        # benchsite/wsgi.py, for servers that load a file
    static_root: str      # what collectstatic wrote; /static/ maps here
    app: str = f"{PROJECT}.wsgi:application"
    module: str = f"{PROJECT}.wsgi"
    page: str = "/items/"
    css: str = CSS_PATH
    css_body: bytes = CSS.encode()

    def page_paths(self, count=5):
        """Pages of the same size at different offsets, for a load that varies its queries."""
        step = (ROWS - PAGE_SIZE) // max(count - 1, 1)
        return [f"{self.page}?start={i * step}" for i in range(count)]

    def env(self):
        return {"DJANGO_SETTINGS_MODULE": f"{PROJECT}.settings"}


def make(dest, python=sys.executable):
    """Create the project in dest (an empty or missing directory); return its Site."""
    os.makedirs(dest, exist_ok=True)
    # manage.py only sets DJANGO_SETTINGS_MODULE when it is not set already
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}

    def run(*argv):
        proc = subprocess.run(argv, cwd=dest, env=env, capture_output=True, text=True)
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(argv[1:3])} failed: {proc.stderr.strip()[-800:]}")
    run(python, "-m", "django", "startproject", PROJECT, dest)
    app = os.path.join(dest, "catalog")
    run(python, "manage.py", "startapp", "catalog")
    _write(os.path.join(app, "models.py"), MODELS)
    _write(os.path.join(app, "views.py"), VIEWS)
    _write(os.path.join(app, "templates", "catalog", "items.html"), TEMPLATE)
    _write(os.path.join(app, "static", "catalog", "site.css"), CSS)
    project = os.path.join(dest, PROJECT)
    with open(os.path.join(project, "urls.py")) as f:
        urls = f.read()
    # startproject's urls.py lists only the admin; the catalog goes beside it
    urls = urls.replace("from django.urls import path",
                        "from django.urls import include, path")
    urls = urls.replace("path('admin/', admin.site.urls),",
                        "path('admin/', admin.site.urls),\n    path('', include('catalog.urls')),")
    urls = urls.replace('path("admin/", admin.site.urls),',
                        'path("admin/", admin.site.urls),\n    path("", include("catalog.urls")),')
    if "catalog.urls" not in urls:
        raise RuntimeError(f"unexpected urls.py from startproject: {urls!r}")
    _write(os.path.join(project, "urls.py"), urls)
    _write(os.path.join(app, "urls.py"), URLS)
    with open(os.path.join(project, "settings.py"), "a") as f:
        f.write(SETTINGS_EXTRA)
    run(python, "manage.py", "makemigrations", "catalog")
    run(python, "manage.py", "migrate", "--noinput")
    run(python, "manage.py", "shell", "-c", FILL)
    run(python, "manage.py", "collectstatic", "--noinput")
    return Site(root=dest, wsgi_file=os.path.join(project, "wsgi.py"),
                static_root=os.path.join(dest, "staticroot"))


def check_page(body):
    """None when body is the page with PAGE_SIZE rows and the stylesheet link, else why not."""
    rows = body.count(b'<tr class="item">')
    if rows != PAGE_SIZE:
        return f"the page has {rows} item rows, expected {PAGE_SIZE}"
    if CSS_PATH.encode() not in body:
        return f"the page does not link {CSS_PATH}"
    return None


def _write(path, text):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(text)


if __name__ == "__main__":
    site = make(os.path.abspath(sys.argv[1]))
    print(site)
