"""Write the directive tables of docs/migrating.md from the importers' own rules.

    python scripts/migrating_tables.py          # rewrite the tables in place
    python scripts/migrating_tables.py --check  # exit 1 if the doc is out of date

Each table sits between `<!-- rules: NAME -->` and `<!-- end rules -->`, NAME being an
importer in TABLES; tests/test_migrating_doc.py runs the check.
"""
import os
import re
import sys

from fastgw import gunicornconf, uwsgiconf

DOC = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "docs",
                   "migrating.md")
TABLES = {
    "uwsgi": lambda: uwsgiconf.RULES.markdown("uWSGI option"),
    "gunicorn": lambda: gunicornconf.RULES.markdown("gunicorn setting"),
}
BLOCK = re.compile(r"(<!-- rules: (\w+) -->\n)(.*?)(<!-- end rules -->)", re.S)


def generated(text):
    """The doc's text with every table made anew."""
    def table(match):
        name = match.group(2)
        if name not in TABLES:
            raise SystemExit(f"{DOC}: unknown table {name!r} (known: {', '.join(TABLES)})")
        return match.group(1) + TABLES[name]() + match.group(4)

    return BLOCK.sub(table, text)


def main(argv):
    with open(DOC, encoding="utf-8") as fh:
        text = fh.read()
    fresh = generated(text)
    if "--check" in argv:
        if fresh != text:
            print(f"{DOC}: the tables differ from the importers' rules; run "
                  f"python scripts/migrating_tables.py", file=sys.stderr)
            return 1
        return 0
    with open(DOC, "w", encoding="utf-8") as fh:
        fh.write(fresh)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
