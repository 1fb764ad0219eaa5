"""What keeps a server on few cores responsive under abuse: connections that send nothing (or trickle their headers)
are closed, and a message repeated in a storm (a full file-descriptor table, say) is logged once in a while."""

from __future__ import annotations

import logging
import time
from typing import Any

from uvicorn.protocols.http.h11_impl import H11Protocol

LOG_EVERY_S = 10.0  # a message repeated faster than this is logged once per interval, with a count
RATE_LIMITED_LOGGERS = ("asyncio", "uvicorn.error", "jasper.serve")


class GuardedH11Protocol(H11Protocol):
    """uvicorn's HTTP/1.1 protocol, plus: a new connection is idle-timed like a kept-alive one, and a connection
    with no complete request after `request_timeout_s` is closed (slow or silent clients hold no socket)."""

    request_timeout_s = 30.0

    def connection_made(self, transport: Any) -> None:  # type: ignore[override]
        """Start the idle timer (uvicorn starts it only after a first response) and the request deadline."""
        super().connection_made(transport)
        self.timeout_keep_alive_task = self.loop.call_later(self.timeout_keep_alive, self.timeout_keep_alive_handler)
        self._arm_deadline()

    def on_response_complete(self) -> None:
        """The next request on this connection gets its own deadline."""
        super().on_response_complete()
        self._arm_deadline()

    def _arm_deadline(self) -> None:
        self.loop.call_later(self.request_timeout_s, self._deadline_passed, self.cycle)

    def _deadline_passed(self, cycle: Any) -> None:
        """Close the connection if no new request has begun since the deadline was armed (headers still missing)."""
        if self.cycle is cycle and not self.transport.is_closing():
            self.transport.close()


class _RateLimit(logging.Filter):
    """Let through the first record of a message, then one per `LOG_EVERY_S` with the count of those held back."""

    def __init__(self) -> None:
        super().__init__()
        self.last: dict[tuple[str, str], tuple[float, int]] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        key = (record.name, str(record.msg)[:120])
        now = time.monotonic()
        seen, held = self.last.get(key, (0.0, 0))
        if now - seen < LOG_EVERY_S:
            self.last[key] = (seen, held + 1)
            return False
        self.last[key] = (now, 0)
        if held:
            record.msg = f"{record.msg} ({held} more like it in the last {LOG_EVERY_S:g} s)"
            record.exc_info = None  # the traceback was shown the first time
        return True


def limit_log_rate() -> None:
    """Rate-limit the loggers a storm of connections or bad requests can flood."""
    rate_limit = _RateLimit()
    for name in RATE_LIMITED_LOGGERS:
        logging.getLogger(name).addFilter(rate_limit)
