"""The HTTP protocol ``wanir serve`` runs: uvicorn's h11 protocol with a deadline on each
request's head and a cap on open connections that closes idle ones first.

uvicorn (0.55) closes a connection that stays idle after a response (``timeout_keep_alive``)
but arms no timer before the first request, nor while a request's head trickles in; with
``limit_concurrency`` a few dozen silent connections then make it answer 503 to everyone.
Here every request's head (request line and headers) must arrive within
:data:`HEAD_TIMEOUT_S` seconds of its first byte (of the connection, for the first), else the
connection is closed; and when more than :data:`MAX_CONNECTIONS` are open the oldest idle
one is closed (the new one when none is idle) instead of refusing requests. A request body
has its own deadline in the application (:data:`wanir.web.app.BODY_TIMEOUT_S`).
"""
from __future__ import annotations

import time

from uvicorn.protocols.http.h11_impl import H11Protocol

#: seconds a client has to send a complete request head
HEAD_TIMEOUT_S = 5.0
#: open connections kept at most (the oldest idle one is closed beyond it)
MAX_CONNECTIONS = 128
#: largest request head buffered (bytes; uvicorn's h11_max_incomplete_event_size)
MAX_HEAD_BYTES = 16 * 1024


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with a request-head deadline and an idle-first connection cap."""

    def connection_made(self, transport) -> None:  # type: ignore[override]
        self._deadline = None
        self._waiting = None
        self._born = time.monotonic()
        super().connection_made(transport)
        if len(self.connections) > MAX_CONNECTIONS:
            self._evict()
        self._arm()

    def _idle(self) -> bool:
        """No request in progress on this connection (none yet, or the last one answered)."""
        return self.cycle is None or self.cycle.response_complete

    def _evict(self) -> None:
        idle = [c for c in self.connections if c is not self and isinstance(c, GuardedH11Protocol) and c._idle()]
        victim = min(idle, key=lambda c: c._born) if idle else self
        victim.transport.close()

    def _arm(self) -> None:
        if self._deadline is None and not self.transport.is_closing():
            self._waiting = self.cycle
            self._deadline = self.loop.call_later(HEAD_TIMEOUT_S, self._expire)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _expire(self) -> None:
        self._deadline = None
        if self.cycle is self._waiting and not self.transport.is_closing():   # no complete head arrived
            self.transport.close()

    def data_received(self, data: bytes) -> None:
        if self._idle():      # the first bytes of a new request: its head has HEAD_TIMEOUT_S seconds
            self._arm()
        super().data_received(data)
        if self.cycle is not self._waiting:   # a request head was parsed
            self._disarm()

    def connection_lost(self, exc) -> None:
        self._disarm()
        super().connection_lost(exc)
