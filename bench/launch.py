"""Start a peer server that has no command-line program of its own.

    python launch.py SERVER MODULE:CALLABLE --host H --port P [--keepalive S]
    python launch.py flup MODULE:CALLABLE --unix PATH

bjoern, meinheld and fastwsgi are libraries with a run() function; flup's
FastCGI server is too. Each runs in this one process (one worker, no fork),
with access logging off like every other server in the benchmark.
"""
import argparse
import importlib
import os
import sys


def load(spec):
    module, _, name = spec.partition(":")
    return getattr(importlib.import_module(module), name or "application")


def run_bjoern(app, args):
    import bjoern
    bjoern.run(app, args.host, args.port)


def run_meinheld(app, args):
    from meinheld import server
    server.set_access_logger(None)
    # meinheld answers every request with Connection: close unless keep-alive is
    # given a timeout; gunicorn's meinheld worker sets it the same way.
    server.set_keepalive(int(args.keepalive))
    server.listen((args.host, args.port))
    server.run(app)


def run_fastwsgi(app, args):
    import fastwsgi
    fastwsgi.run(wsgi_app=app, host=args.host, port=args.port)


def run_flup(app, args):
    from flup.server.fcgi import WSGIServer
    os.umask(0o000)     # the socket must be writable by nginx's worker
    WSGIServer(app, bindAddress=args.unix).run()


RUNNERS = {"bjoern": run_bjoern, "meinheld": run_meinheld, "fastwsgi": run_fastwsgi,
           "flup": run_flup}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("server", choices=sorted(RUNNERS))
    parser.add_argument("app")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int)
    parser.add_argument("--unix")
    parser.add_argument("--keepalive", type=float, default=10)
    args = parser.parse_args()
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    RUNNERS[args.server](load(args.app), args)


if __name__ == "__main__":
    main()
