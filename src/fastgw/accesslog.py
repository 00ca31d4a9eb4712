"""The access log, in Apache's combined format (one line per response)."""
import sys
import time


class AccessLog:
    def __init__(self, target):
        self.target = target
        self.stream = None
        self._stamp_at = None
        self._stamp = ""
        self.reopen()

    def reopen(self):
        """(Re)open the file, e.g. after logrotate moved it."""
        if self.target == "-":
            self.stream = sys.stdout
            return
        old = self.stream
        self.stream = open(self.target, "a", buffering=1, encoding="utf-8", errors="backslashreplace")
        if old is not None:
            old.close()

    def timestamp(self):
        now = int(time.time())
        if now != self._stamp_at:
            self._stamp_at = now
            self._stamp = time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(now))
        return self._stamp

    def log(self, req, status, nbytes, user=None):
        """One line for a finished request: the Request, its status code and body bytes sent."""
        referer = user_agent = "-"
        for name, value in req.headers:
            if len(name) == 7 and name.lower() == "referer":
                referer = value
            elif len(name) == 10 and name.lower() == "user-agent":
                user_agent = value
        peer = req.peer
        request_line = f"{req.method} {req.target} {req.version}"
        line = (f"{peer[0] if peer else '-'} - {quote(user) if user else '-'} "
                f"[{self.timestamp()}] \"{quote(request_line)}\" {status or '-'} {nbytes or '-'} "
                f"\"{quote(referer)}\" \"{quote(user_agent)}\"\n")
        self.stream.write(line)
        if self.stream is sys.stdout:
            self.stream.flush()


def quote(text):
    """Escape what would break the log line (quotes, backslashes, control characters)."""
    if text.isprintable() and '"' not in text and "\\" not in text:
        return text
    return "".join(c if c.isprintable() and c not in '"\\' else f"\\x{ord(c):02x}" for c in text)
