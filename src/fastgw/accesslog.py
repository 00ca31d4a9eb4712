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

    def log(self, environ, status, nbytes):
        request_line = (f"{environ['REQUEST_METHOD']} {environ.get('REQUEST_URI', '')} "
                        f"{environ['SERVER_PROTOCOL']}")
        line = (f"{environ.get('REMOTE_ADDR') or '-'} - {environ.get('REMOTE_USER') or '-'} "
                f"[{self.timestamp()}] \"{quote(request_line)}\" {status or '-'} {nbytes or '-'} "
                f"\"{quote(environ.get('HTTP_REFERER', '-'))}\" "
                f"\"{quote(environ.get('HTTP_USER_AGENT', '-'))}\"\n")
        self.stream.write(line)
        if self.stream is sys.stdout:
            self.stream.flush()


def quote(text):
    """Escape what would break the log line (quotes, backslashes, control characters)."""
    if text.isprintable() and '"' not in text and "\\" not in text:
        return text
    return "".join(c if c.isprintable() and c not in '"\\' else f"\\x{ord(c):02x}" for c in text)
