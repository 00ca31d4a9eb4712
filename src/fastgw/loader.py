"""Import the WSGI application named `module:attribute`, `module:factory(args)` or `module`."""
import ast
import importlib
import os
import sys
import traceback

from fastgw.errors import AppLoadError, ConfigError


def parse_app_spec(spec):
    """Split APP into (module, attribute path, call args or None); raise ConfigError if malformed."""
    module, sep, target = spec.partition(":")
    if not sep:
        target = "application"
    if not module or not all(part.isidentifier() for part in module.split(".")):
        raise ConfigError(f"APP {spec!r}: expected MODULE:ATTRIBUTE, e.g. mysite.wsgi:application")
    call = None
    if target.endswith(")"):
        try:
            node = ast.parse(target, mode="eval").body
        except SyntaxError:
            node = None
        if not isinstance(node, ast.Call):
            raise ConfigError(f"APP {spec!r}: a factory call looks like module:create_app() "
                              f"or module:create_app('arg', key=1)")
        try:
            args = [ast.literal_eval(a) for a in node.args]
            kwargs = {k.arg: ast.literal_eval(k.value) for k in node.keywords}
        except ValueError:
            raise ConfigError(f"APP {spec!r}: factory arguments must be Python literals") from None
        call = (args, kwargs)
        target = ast.unparse(node.func)
    if not target or not all(part.isidentifier() for part in target.split(".")):
        raise ConfigError(f"APP {spec!r}: {target!r} is not an attribute name")
    return module, target, call


def load_app(spec):
    """Return the WSGI callable for APP, or raise AppLoadError saying what to fix."""
    module_name, target, call = parse_app_spec(spec)
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        if e.name and (module_name == e.name or module_name.startswith(e.name + ".")):
            raise AppLoadError(
                f"cannot import {module_name!r} (APP {spec!r}): no module named {e.name!r} "
                f"in {os.getcwd()} or on the Python path; check the name, --chdir and "
                f"--pythonpath") from None
        raise AppLoadError(f"importing {module_name!r} (APP {spec!r}) failed: {e} "
                           f"(traceback above)", traceback.format_exc()) from None
    except BaseException as e:
        raise AppLoadError(f"importing {module_name!r} (APP {spec!r}) raised "
                           f"{type(e).__name__}: {e} (traceback above)",
                           traceback.format_exc()) from None
    obj = module
    for depth, part in enumerate(target.split(".")):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            where = module_name if depth == 0 else f"{module_name}:{'.'.join(target.split('.')[:depth])}"
            names = ", ".join(n for n in dir(obj) if not n.startswith("_"))[:200]
            raise AppLoadError(f"{where!r} has no attribute {part!r} (APP {spec!r}); "
                               f"it defines: {names or 'nothing public'}") from None
    if call is not None:
        if not callable(obj):
            raise AppLoadError(f"{module_name}:{target} is not callable, so APP {spec!r} "
                               f"cannot call it")
        try:
            obj = obj(*call[0], **call[1])
        except Exception as e:
            raise AppLoadError(f"calling the factory {module_name}:{target} (APP {spec!r}) "
                               f"raised {type(e).__name__}: {e} (traceback above)",
                               traceback.format_exc()) from None
    if not callable(obj):
        raise AppLoadError(f"APP {spec!r} is a {type(obj).__name__} ({obj!r:.60}), not a WSGI "
                           f"callable; name the application object, e.g. module:application")
    return obj


def prepare_import_path(pythonpath):
    """Like WSGIPythonPath: the --pythonpath entries, then the current directory, come first."""
    for entry in reversed([os.getcwd(), *pythonpath]):
        path = os.path.abspath(entry)
        if path in sys.path:
            sys.path.remove(path)
        sys.path.insert(0, path)
