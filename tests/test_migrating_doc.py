"""docs/migrating.md and the importers cannot disagree: its directive tables are the
importers' own rules (scripts/migrating_tables.py writes them), its example outputs are
what the importers print for its example inputs, and every rule the importers act on
has its handler (and every handler its rule)."""
import os
import re
import subprocess
import sys

import pytest

from fastgw import gunicornconf, uwsgiconf
from fastgw.importing import MAPS
from fgwtest import fastgw_command

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOC = os.path.join(ROOT, "docs", "migrating.md")
EXAMPLE = re.compile(r"<!-- example: (\w+) (\S+) -->\n```\w+\n(.*?)```", re.S)
OUTPUT = re.compile(r"<!-- output: (\w+) -->\n```toml\n(.*?)```", re.S)


def doc_text():
    with open(DOC, encoding="utf-8") as fh:
        return fh.read()


def test_tables_are_the_importers_rules():
    done = subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "migrating_tables.py"),
                           "--check"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    text = doc_text()
    for heading, rules in (("uWSGI option", uwsgiconf.RULES),
                           ("gunicorn setting", gunicornconf.RULES)):
        assert rules.markdown(heading) in text


@pytest.mark.parametrize("importer", ["uwsgi", "gunicorn"])
def test_example_output_is_what_the_importer_prints(tmp_path, importer):
    examples = {name: (file, body) for name, file, body in EXAMPLE.findall(doc_text())}
    outputs = dict(OUTPUT.findall(doc_text()))
    file, body = examples[importer]
    (tmp_path / file).write_text(body)
    done = subprocess.run(fastgw_command() + [f"import-{importer}", file], cwd=tmp_path,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout == outputs[importer]


@pytest.mark.parametrize("module, site", [(uwsgiconf, uwsgiconf.UwsgiSite),
                                          (gunicornconf, gunicornconf.GunicornSite)])
def test_every_rule_has_its_handler(module, site):
    handled = {name for name in dir(site) if name.startswith("on_")}
    wanted = set()
    for rule in module.RULES.rules:
        if rule.kind == MAPS:
            for name in rule.names:
                if module is uwsgiconf:
                    wanted.add("on_" + rule.names[0].replace("-", "_"))
                elif name not in gunicornconf.HOOKS:
                    wanted.add("on_" + name)
    # uWSGI: one method for a rule and its aliases (static-map2 shares static-map's).
    assert wanted <= handled, sorted(wanted - handled)
    extra = handled - wanted - {"on_static_map2"}
    assert not extra, f"handlers without a rule (not in the doc's table): {sorted(extra)}"
