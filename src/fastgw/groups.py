"""Process groups: mod_wsgi's daemon mode (WSGIDaemonProcess + WSGIProcessGroup).

Strategy: a group is a pool of fastgw workers of its own, forked by the master,
that serve the mounts naming the group over FastCGI on a private UNIX socket
(mode 0600, in a 0700 directory of the master's). The front workers never import
a group's applications; they forward the group's mounts to that socket through
the FastCGI upstream client (upstream.GroupForwarder), with the whole request
path, so the group's own router gives the application the same SCRIPT_NAME and
PATH_INFO as in-process mounting would (the Group type and a group process's
setup are fastgw.groupconfig). An auth hook can run in a group too (`auth.group`):
the front asks with FASTGW_AUTH_* parameters (fastgw.groupauth) and GroupService,
here, answers them from the group's own AuthGates.
"""
import json
import logging

from fastgw.groupauth import AUTH_HOOK, AUTH_MOUNT, AUTH_PASSWORD, AUTH_USER

log = logging.getLogger("fastgw.error")


def run_auth_hook(req, hooks, environ_of):
    """Answer a front's FASTGW_AUTH_* request: the result of the group's hook as JSON.

    `hooks` maps a mount's prefix to its AuthGate (in this process); the answer is
    {"allowed": true/false/null} or {"groups": [...]}."""
    params = req.params
    gate = hooks.get(params.get(AUTH_MOUNT, ""))
    if gate is None:
        raise LookupError(f"no auth hook for mount {params.get(AUTH_MOUNT)!r} in this group")
    user = params.get(AUTH_USER, "").encode("latin-1").decode("utf-8", "replace")
    environ = environ_of(req)
    for key in (AUTH_HOOK, AUTH_MOUNT, AUTH_USER, AUTH_PASSWORD):
        environ.pop(key, None)
    if params[AUTH_HOOK] == "groups_for_user":
        groups = gate.groups_for_user(environ, user) or ()
        return {"groups": [g.decode("utf-8", "replace") if isinstance(g, bytes) else str(g)
                           for g in groups]}
    password = params.get(AUTH_PASSWORD, "").encode("latin-1").decode("utf-8", "replace")
    allowed = gate.check_password(environ, user, password)
    return {"allowed": allowed if allowed in (True, False, None) else bool(allowed)}


class GroupService:
    """The handler of a group's processes: its mounts, and the auth hooks the front asks
    it to run (requests carrying FASTGW_AUTH_HOOK)."""

    def __init__(self, handler, gates, environ_of):
        """`gates`: {mount prefix: AuthGate} of the hooks run here; `environ_of(req)`: the
        environ handed to them."""
        self.handler = handler
        self.gates = gates
        self.environ_of = environ_of

    def __call__(self, req, resp):
        params = req.params
        if params is None or AUTH_HOOK not in params:
            return self.handler(req, resp)
        try:
            body = json.dumps(run_auth_hook(req, self.gates, self.environ_of)).encode()
            status = "200 OK"
        except Exception:
            log.exception("the auth hook %s for mount %r failed", params.get(AUTH_HOOK),
                          params.get(AUTH_MOUNT))
            body = b'{"error": "the hook failed; see the error log"}'
            status = "500 Internal Server Error"
        resp.send_head(status, [("Content-Type", "application/json")], len(body), False)
        resp.finish(body)


