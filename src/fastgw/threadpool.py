"""The application threads of a worker started with --threads N (N > 1)."""
import queue
import threading
import time


class ThreadPool:
    """N daemon threads taking jobs from one queue; the loop thread never waits on them."""

    def __init__(self, size, name="fastgw-app"):
        self.jobs = queue.SimpleQueue()
        self.running = {}  # thread ident -> monotonic start of its current job
        self.threads = [threading.Thread(target=self.work, name=f"{name}-{i}", daemon=True)
                        for i in range(size)]
        for thread in self.threads:
            thread.start()

    def submit(self, fn, *args):
        self.jobs.put((fn, args))

    def oldest_start(self):
        """When the longest-running current job started (None when all threads are idle)."""
        return min(self.running.values(), default=None)

    def work(self):
        ident = threading.get_ident()
        while True:
            fn, args = self.jobs.get()
            self.running[ident] = time.monotonic()
            try:
                fn(*args)
            finally:
                del self.running[ident]
