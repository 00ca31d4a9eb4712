"""The rules of docs/architecture.md, read from the source: the module graph of
src/fastgw has no cycle, no handler module imports a protocol module, no function
imports one of fastgw's own modules (only optional heavy dependencies may be imported
late), and every module is at most 600 lines and (Python) opens with a docstring.
Python modules are parsed with `ast`; the Cython modules' `import` and `cimport` lines
are read with a regular expression."""
import ast
import pathlib
import re

SRC = pathlib.Path(__file__).resolve().parent.parent / "src" / "fastgw"

# The event loop and the protocols: bytes in, Requests out (and back). The Request
# itself (_request) is what handlers may know of the layer below.
PROTOCOLS = {"_stream", "_loop", "_lifecycle", "_http", "_httphead", "_httpbody",
             "_proxyproto", "_responsehead", "_fcgi", "_fcgirecord", "_scgi"}
# What answers a Request, whichever protocol carried it.
HANDLERS = {"static", "fileheaders", "cgi", "cgiresponse", "gateway", "gatewayparams",
            "subrequest", "upstream", "offload", "auth", "groups", "groupauth", "wsgi",
            "router"}
# Handler imports of the protocol layer that are still to go: name -> what removes it.
# An entry that no longer matches the code fails the test, so the list cannot go stale.
PENDING_PROTOCOL_IMPORTS = {}
# fastgw modules that wrap an optional heavy dependency (Django, matplotlib) and so may
# be imported inside a function; none does today.
LATE_IMPORTS_ALLOWED = frozenset()

_PYX_IMPORT = re.compile(r"^\s*(?:from\s+fastgw\.(\w+)\s+c?import\b|c?import\s+fastgw\.(\w+))",
                         re.M)


def own_modules():
    return {p.stem for p in SRC.iterdir() if p.suffix in (".py", ".pyx", ".pxd")}


def imported(node, modules):
    """The fastgw modules an Import/ImportFrom node names."""
    if isinstance(node, ast.Import):
        return {a.name.split(".")[1] for a in node.names
                if a.name.startswith("fastgw.") and a.name.count(".") == 1}
    if node.level:
        base = node.module.split(".")[0] if node.module else None
    elif node.module and (node.module == "fastgw" or node.module.startswith("fastgw.")):
        base = node.module.split(".")[1] if "." in node.module else None
    else:
        return set()
    if base is not None:
        return {base}
    # from fastgw import x: x is a module only when it is a file of the package.
    return {a.name for a in node.names if a.name in modules}


def python_imports(path, modules):
    """({module imported at module level}, [(line, module) imported inside a function])."""
    top, late = set(), []

    def walk(node, in_function):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.Import, ast.ImportFrom)):
                names = imported(child, modules)
                if in_function:
                    late.extend((child.lineno, name) for name in sorted(names))
                else:
                    top.update(names)
            walk(child, in_function or isinstance(
                child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)))

    walk(ast.parse(path.read_text(encoding="utf-8"), str(path)), False)
    return top, late


def import_graph():
    """{module: {modules it imports, at the top or in a function}} and
    [(module, line, module imported in a function)]."""
    modules = own_modules()
    graph, late = {}, []
    for path in sorted(SRC.iterdir()):
        name = path.stem
        if path.suffix == ".py":
            top, in_functions = python_imports(path, modules)
            top |= {other for _, other in in_functions}
            late += [(name, line, other) for line, other in in_functions]
        elif path.suffix in (".pyx", ".pxd"):
            top = {a or b for a, b in _PYX_IMPORT.findall(path.read_text(encoding="utf-8"))}
        else:
            continue
        graph.setdefault(name, set()).update(top - {name})
    return graph, late


def find_cycle(graph):
    """One import cycle as a list of modules (first == last), or None."""
    state = {}

    def visit(module, path):
        state[module] = "open"
        path.append(module)
        for other in sorted(graph.get(module, ())):
            if state.get(other) == "open":
                return path[path.index(other):] + [other]
            if other not in state:
                cycle = visit(other, path)
                if cycle:
                    return cycle
        path.pop()
        state[module] = "done"
        return None

    for module in sorted(graph):
        if module not in state:
            cycle = visit(module, [])
            if cycle:
                return cycle
    return None


def test_the_graph_reader_sees_imports_of_every_form(tmp_path):
    # The rules below are only as good as the reader: it must see each way of importing.
    mod = tmp_path / "m.py"
    mod.write_text("import fastgw.a\nfrom fastgw import b, __version__\nfrom fastgw.c import x\n"
                   "from .d import y\n\ndef f():\n    from fastgw import e\n    import os\n",
                   encoding="utf-8")
    top, late = python_imports(mod, {"a", "b", "c", "d", "e"})
    assert top == {"a", "b", "c", "d"}
    assert late == [(7, "e")]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None
    assert {a or b for a, b in _PYX_IMPORT.findall(
        "from fastgw._loop cimport Loop\ncimport fastgw._http\nfrom fastgw.cgiparams import f\n"
    )} == {"_loop", "_http", "cgiparams"}


def test_the_package_is_read():
    graph, _ = import_graph()
    assert PROTOCOLS | HANDLERS <= set(graph), "a module named here is gone; update the lists"
    assert graph["worker"] >= {"_loop", "_http", "mountkinds"}


def test_no_import_cycle():
    graph, _ = import_graph()
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle) + " (docs/architecture.md)"


def test_no_handler_imports_a_protocol():
    graph, _ = import_graph()
    found = {(handler, protocol) for handler in HANDLERS
             for protocol in graph.get(handler, set()) & PROTOCOLS}
    unexpected = sorted(found - set(PENDING_PROTOCOL_IMPORTS))
    assert not unexpected, ("handler modules import the protocol layer (a handler must not "
                            "know which protocol carried a request): %r" % unexpected)
    stale = sorted(set(PENDING_PROTOCOL_IMPORTS) - found)
    assert not stale, "no longer imported, remove from PENDING_PROTOCOL_IMPORTS: %r" % stale


def test_no_function_level_import_of_fastgw_modules():
    _, late = import_graph()
    bad = [f"{module}.py:{line} imports {other}" for module, line, other in late
           if other not in LATE_IMPORTS_ALLOWED]
    assert not bad, "import fastgw's modules at the top of the module: " + "; ".join(bad)


# Files over the limit that are still to be split: name -> what splits them.
PENDING_LONG = {}
MAX_LINES = 600


def test_modules_are_small_and_say_their_strategy():
    long = {}
    for path in sorted(SRC.iterdir()):
        if path.suffix not in (".py", ".pyx", ".pxd"):
            continue
        text = path.read_text(encoding="utf-8")
        if text.count("\n") > MAX_LINES:
            long[path.name] = text.count("\n")
        if path.suffix == ".py" and text.strip():
            assert ast.get_docstring(ast.parse(text)), f"{path.name}: open with a docstring " \
                                                        f"giving the module's strategy"
    unexpected = sorted(set(long) - set(PENDING_LONG))
    assert not unexpected, f"over {MAX_LINES} lines, split them: " + ", ".join(
        f"{name} ({long[name]})" for name in unexpected)
    stale = sorted(set(PENDING_LONG) - set(long))
    assert not stale, "no longer over the limit, remove from PENDING_LONG: %r" % stale
