"""What the process-model tests share about tests/apps/procapp.py: its events log,
unique request ids, and the gate files that release a waiting request."""
import os
import uuid

APP = "procapp:application"


def events_path(test_dir):
    return os.path.join(test_dir, "procapp-events.log")


def new_id(what):
    return "%s-%s" % (what, uuid.uuid4().hex[:12])


def release(test_dir, ident):
    with open(os.path.join(test_dir, "gate-" + ident), "w") as fh:
        fh.write("go\n")
