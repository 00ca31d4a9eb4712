"""HTTP Basic authentication in front of a mount, checked by a Python hook (mod_wsgi's
WSGIAuthUserScript / WSGIAuthGroupScript).

Strategy: an AuthGate wraps the mount's handler (static, app or gateway alike). It
reads the Authorization header, calls `check_password(environ, user, password)`
(True: allowed; False or None, the unknown user: 401) and, with `require_group`,
`groups_for_user(environ, user)`. Both hooks are imported on their first use, in
the worker and after the mounts' applications were imported, so a hook that needs
the application set up first (Django's `django.contrib.auth.handlers.modwsgi`)
works unchanged. Every refusal is 401 with `WWW-Authenticate`, a group failure
included: Apache's default (mod_authz_core answers an authenticated user who fails
`Require group` with 401 unless AuthzSendForbiddenOnFailure is on), which is what
mod_wsgi's group provider gets. A malformed Authorization header is a failed login
(401), as in mod_auth_basic, never a 400. Once allowed, the Authorization header is
taken out of the request, so neither the application nor the access log sees the
password, and the application gets REMOTE_USER and AUTH_TYPE=Basic. Credentials are
never logged.
"""
import base64
import binascii
import importlib
import logging
import threading

from fastgw.authconfig import split_hook

log = logging.getLogger("fastgw.error")

UNAUTHORIZED_BODY = b"401 Unauthorized\n"
ERROR_BODY = b"500 Internal Server Error\n"


class Hook:
    """A function named module:function, imported on its first call (then kept)."""

    def __init__(self, spec, what):
        self.spec = spec
        self.what = what
        self.function = None
        self.lock = threading.Lock()

    def __call__(self, *args):
        function = self.function
        if function is None:
            with self.lock:
                if self.function is None:
                    module, name = split_hook(self.spec, self.what)
                    obj = importlib.import_module(module)
                    for part in name.split("."):
                        obj = getattr(obj, part)
                    self.function = obj
                function = self.function
        return function(*args)


def parse_basic(value):
    """(user, password) of an `Authorization: Basic ...` value, or None if it is not one.

    RFC 7617: the credentials are UTF-8 (we say charset="UTF-8" in the challenge);
    other bytes are taken as latin-1, as older clients send them."""
    scheme, _, token = value.strip().partition(" ")
    if scheme.lower() != "basic":
        return None
    token = token.strip()
    if not token or len(token) > 4096:
        return None
    try:
        raw = base64.b64decode(token.encode("ascii"), validate=True)
    except (binascii.Error, ValueError, UnicodeEncodeError):
        return None
    user, sep, password = raw.partition(b":")
    if not sep or not user:
        return None
    try:
        return user.decode("utf-8"), password.decode("utf-8"), user
    except UnicodeDecodeError:
        return user.decode("latin-1"), password.decode("latin-1"), user


def authorization(req):
    """The Authorization header of the request (HTTP header or FastCGI/SCGI param)."""
    for name, value in req.headers or ():
        if len(name) == 13 and name.lower() == "authorization":
            return value
    params = req.params
    if params is not None:
        return params.get("HTTP_AUTHORIZATION")
    return None


def strip_authorization(req):
    """Take the credentials out of the request before the handler (and the log) see it."""
    headers = req.headers
    if headers:
        req.headers = [h for h in headers
                       if not (len(h[0]) == 13 and h[0].lower() == "authorization")]
    params = req.params
    if params is not None:
        params.pop("HTTP_AUTHORIZATION", None)


class AuthGate:
    """The handler of a mount with `auth`: checks the credentials, then calls `inner`.

    `environ_of(req)` builds the environ handed to the hooks (the one a WSGI app would
    see); `hooks`: the hooks when they run elsewhere (groupauth.GroupAuthHook.pair),
    else they are imported here; `takes_environ`: `inner` is a WSGI handler, called with
    REMOTE_USER and AUTH_TYPE as extra environ entries instead of CGI params."""

    def __init__(self, inner, auth, environ_of, where="", hooks=None, takes_environ=False):
        self.inner = inner
        self.auth = auth
        self.where = where or "mount"
        if hooks is not None:
            # auth.group: (check_password, groups_for_user) asking that process group.
            self.check_password, self.groups_for_user = hooks
        else:
            self.check_password = Hook(auth.check_password, f"{self.where}: auth.check_password")
            self.groups_for_user = (Hook(auth.groups_for_user,
                                         f"{self.where}: auth.groups_for_user")
                                    if auth.groups_for_user else None)
        self.wsgi = takes_environ
        self.environ_of = environ_of
        self.challenge = [("WWW-Authenticate", f'Basic realm="{auth.realm}", charset="UTF-8"'),
                          ("Content-Type", "text/plain; charset=utf-8")]

    def __call__(self, req, resp):
        value = authorization(req)
        credentials = parse_basic(value) if value is not None else None
        if credentials is None:
            if value is not None:
                log.info("%s: malformed or non-Basic Authorization header from %s",
                         self.where, req.peer)
            return self.refuse(resp)
        user, password, raw_user = credentials
        try:
            environ = self.environ_of(req)
            environ.pop("HTTP_AUTHORIZATION", None)
            allowed = self.check_password(environ, user, password)
            if allowed is True and self.auth.require_group is not None:
                groups = self.groups_for_user(environ, user) or ()
                if self.auth.require_group not in {g.decode("utf-8", "replace")
                                                   if isinstance(g, bytes) else g
                                                   for g in groups}:
                    log.info("%s: user %r is not in group %r", self.where, user,
                             self.auth.require_group)
                    return self.refuse(resp)
        except Exception:
            log.exception("%s: the authentication hook failed for user %r", self.where, user)
            resp.send_head("500 Internal Server Error",
                           [("Content-Type", "text/plain; charset=utf-8")], len(ERROR_BODY), False)
            resp.finish(ERROR_BODY)
            return
        if allowed is not True:
            log.info("%s: %s %r", self.where,
                     "unknown user" if allowed is None else "wrong password for user", user)
            return self.refuse(resp)
        strip_authorization(req)
        # PEP 3333: environ strings carry the bytes as latin-1.
        remote_user = raw_user.decode("latin-1")
        if self.wsgi:
            return self.inner(req, resp, {"REMOTE_USER": remote_user, "AUTH_TYPE": "Basic"})
        if req.params is None:
            req.params = {}
        req.params["REMOTE_USER"] = remote_user
        req.params["AUTH_TYPE"] = "Basic"
        return self.inner(req, resp)

    def refuse(self, resp):
        resp.send_head("401 Unauthorized", self.challenge, len(UNAUTHORIZED_BODY), False)
        resp.finish(UNAUTHORIZED_BODY)
