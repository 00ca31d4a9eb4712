"""The page of memory the master shares with its workers: a heartbeat and a request count per worker slot.

Strategy: one anonymous shared mapping made before any fork. The first part holds one
double per slot (CLOCK_MONOTONIC seconds: the start of the worker's oldest running
request, or the last time it was idle), written by the worker's loop (_loop.pyx writes
it in C at 8 * slot) and read by the master to find stuck workers and to tell the
service manager it is alive. The second part holds one unsigned 64-bit count per slot,
the requests the worker has served, written once a second and read for the STATUS the
master reports. The third part holds one word per slot the master sets before it
sends SIGTERM to a worker it has replaced (a reload or fewer workers): that worker
stops accepting at once, since the new ones take what waits in the shared listen
backlog, instead of draining the backlog first as a worker of a stopping server does.
The fourth part holds one count per slot a worker raises to ask for its replacement
(--max-requests, --reload-on-rss, --reload): the master forks the successor, waits
until it has imported the application and only then retires the worker, so no moment
passes without a worker accepting (and a successor that cannot start leaves the old
worker serving).
Plain loads and stores of aligned 8-byte words: no locks, and a value read while
being written is at worst one tick old.
"""
import mmap
import struct

SLOTS = 1024


class Heartbeats:
    def __init__(self, slots=SLOTS):
        self.slots = slots
        self.page = mmap.mmap(-1, 32 * slots)
        self.free = list(range(slots - 1, -1, -1))

    def take(self):
        slot = self.free.pop()
        self.write(slot, 0.0)
        self.write_requests(slot, 0)
        struct.pack_into("Q", self.page, 8 * (2 * self.slots + slot), 0)
        struct.pack_into("Q", self.page, 8 * (3 * self.slots + slot), 0)
        return slot

    def give_back(self, slot):
        self.free.append(slot)

    def write(self, slot, value):
        struct.pack_into("d", self.page, 8 * slot, value)

    def read(self, slot):
        return struct.unpack_from("d", self.page, 8 * slot)[0]

    def write_requests(self, slot, count):
        struct.pack_into("Q", self.page, 8 * (self.slots + slot), count)

    def read_requests(self, slot):
        return struct.unpack_from("Q", self.page, 8 * (self.slots + slot))[0]

    def mark_replaced(self, slot):
        struct.pack_into("Q", self.page, 8 * (2 * self.slots + slot), 1)

    def replaced(self, slot):
        return struct.unpack_from("Q", self.page, 8 * (2 * self.slots + slot))[0] == 1

    def ask_replacement(self, slot):
        """In the worker: one more request for a successor (the master acts on changes)."""
        offset = 8 * (3 * self.slots + slot)
        count = struct.unpack_from("Q", self.page, offset)[0]
        struct.pack_into("Q", self.page, offset, count + 1)

    def replacements_asked(self, slot):
        return struct.unpack_from("Q", self.page, 8 * (3 * self.slots + slot))[0]
