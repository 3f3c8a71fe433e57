"""Rewritten bodies kept by the version the upstream gave them.

A page, stylesheet or script that does not change (a static file with a strong ETag)
would be rewritten identically on every request. Its rewritten bytes are kept, keyed
by the route's URL map, the resource, its ETag and its encoding, in a small LRU
bounded in bytes; the next answer with the same ETag is sent from here and the regex
passes are skipped. Weak ETags (equivalent, not identical bytes), answers without one
and answers marked `no-store` or `private` are never kept.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable

#: Bytes of rewritten bodies kept in all (per process).
CAPACITY = 32 * 1024 * 1024


class RewriteCache:
    def __init__(self, capacity: int = CAPACITY) -> None:
        self.capacity = capacity
        self.size = 0
        self.hits = 0
        self._entries: OrderedDict[Hashable, bytes] = OrderedDict()

    def get(self, key: Hashable) -> bytes | None:
        body = self._entries.get(key)
        if body is not None:
            self._entries.move_to_end(key)
            self.hits += 1
        return body

    def put(self, key: Hashable, body: bytes) -> None:
        if len(body) > self.capacity // 8:
            return  # one large body would push out everything else
        old = self._entries.pop(key, None)
        if old is not None:
            self.size -= len(old)
        self._entries[key] = body
        self.size += len(body)
        while self.size > self.capacity:
            _, evicted = self._entries.popitem(last=False)
            self.size -= len(evicted)


def cache_key(headers: list[tuple[bytes, bytes]]) -> bytes | None:
    """The strong ETag that makes an answer's rewritten body worth keeping, or None."""
    etag = None
    for name, value in headers:
        if name == b"etag":
            etag = value
        elif name == b"cache-control":
            lowered = value.lower()
            if b"no-store" in lowered or b"private" in lowered:
                return None
    if etag is None or etag.startswith(b"W/") or not etag.startswith(b'"'):
        return None
    return etag
