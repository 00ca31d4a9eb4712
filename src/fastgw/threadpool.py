"""The application threads of a worker started with --threads N (N > 1)."""
import queue
import threading


class ThreadPool:
    """N daemon threads taking jobs from one queue; the loop thread never waits on them."""

    def __init__(self, size, name="fastgw-app"):
        self.jobs = queue.SimpleQueue()
        self.threads = [threading.Thread(target=self.work, name=f"{name}-{i}", daemon=True)
                        for i in range(size)]
        for thread in self.threads:
            thread.start()

    def submit(self, fn, *args):
        self.jobs.put((fn, args))

    def work(self):
        while True:
            fn, args = self.jobs.get()
            fn(*args)
