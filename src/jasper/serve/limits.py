"""The server's limits, each a `jasper serve` flag (docs/serving.md lists them with their defaults)."""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

from jasper.errors import JasperError

# the flag of each limit, where its name differs (`--max-body-mb` takes MiB)
FLAGS = {"max_body_bytes": "--max-body-mb"}


@dataclass(frozen=True)
class Limits:
    """What one request may ask for, how requests are batched, and how much waiting work the server holds.

    Every value is a `jasper serve` flag (docs/serving.md lists them with their defaults).
    """

    max_inputs: int = 2048  # texts per request (OpenAI's limit)
    max_body_bytes: int = 8 * 2**20  # request body, enforced while it is read (chunked or not)
    max_input_chars: int = 200_000  # characters per text
    max_batch: int = 256  # texts embedded together
    max_batch_chars: int = 32_768  # characters embedded together: a long text waits for no more than one small batch
    max_wait_ms: float = 5.0  # how long a batch waits for company when other requests are on their way
    max_queue_texts: int = 4096  # texts waiting to be embedded; a request past it gets 429 + Retry-After
    max_queue_chars: int = 32 * 2**20  # characters waiting to be embedded, likewise
    request_timeout_s: float = 30.0  # to send a whole request (headers and body); 408 after
    idle_timeout_s: float = 5.0  # an open connection with no request in flight is closed after this
    max_connections: int = 512  # open connections and requests; past it, 503

    def check(self) -> None:
        """One line naming the flag of a limit that would refuse everything or stall the server (zero, negative,
        not a number); waiting may be 0."""
        for item in fields(self):
            value = getattr(self, item.name)
            lowest_ok = item.name == "max_wait_ms" and value == 0
            if not math.isfinite(value) or (value <= 0 and not lowest_ok):
                flag = FLAGS.get(item.name, "--" + item.name.replace("_", "-"))
                must = "0 or more" if item.name == "max_wait_ms" else "more than 0"
                raise JasperError(f"{flag} {value:g}: it must be {must}")
