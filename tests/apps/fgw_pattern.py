"""Deterministic byte pattern shared by the streaming app and the tests.

Every block starts with its own 8-byte big-endian index, so a dropped,
duplicated or reordered block changes the sha256 of the stream.
"""
import struct

BLOCK = 65536
_BASE = bytes((i * 131 + 17) & 0xFF for i in range(BLOCK))


def pattern_chunks(total, chunk=BLOCK):
    """Yield ``total`` bytes of the pattern in pieces of at most ``chunk``."""
    if not 0 < chunk <= BLOCK:
        raise ValueError("chunk must be in 1..%d" % BLOCK)
    index = 0
    remaining = total
    while remaining > 0:
        size = min(chunk, remaining)
        block = struct.pack(">Q", index) + _BASE[8:size]
        yield block[:size]
        index += 1
        remaining -= size
