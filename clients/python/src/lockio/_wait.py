"""The arithmetic of waiting in a lock's queue, and the value rules checked before sending.

Pure, copied from the Rust client (crates/client/src/wait.rs): a wait is a long poll that the
server keeps open until the grant, the deadline or the session's end. The same request again
(same session and resource) keeps its place if it arrives within 2 s of a lost connection, so
after a failure the client asks again at once with the time that is left, never with the whole
wait again (that would move the deadline later).
"""

from __future__ import annotations

import math
from typing import Any, Optional

from ._errors import InvalidRequest

MAX_WAIT_SECS = 300
MAX_LOCK_DELAY_SECS = 60
MIN_TIMEOUT_SECS = 5
MAX_TIMEOUT_SECS = 3600
#: A shared lock's ``limit`` (a counting semaphore's permits): 1 to 10,000.
MAX_LIMIT = 10_000
#: A grant's ``value``: at most this many bytes of UTF-8.
MAX_VALUE_BYTES = 1024
MODES = ("exclusive", "shared")
#: The longest pause between two rounds of attempts of a wait: well inside the 2 s for which the
#: server keeps the place of a waiter whose connection broke.
RETRY_PAUSE_CAP = 0.5


def whole_secs(field: str, value: Any, low: int, high: int) -> int:
    """``value`` as whole seconds from ``low`` to ``high``, or ``InvalidRequest`` naming ``field``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != int(value) \
            or not low <= value <= high:
        raise InvalidRequest(field, f"must be whole seconds from {low} to {high}")
    return int(value)


def wait_secs(wait: Any) -> int:
    """A wait as the contract counts it: whole seconds, 0 (a try-lock) to 300."""
    return whole_secs("wait", wait, 0, MAX_WAIT_SECS)


def lock_delay_secs(lock_delay: Any) -> int:
    """A session's lock-delay: whole seconds, 0 to 60."""
    return whole_secs("lock_delay", lock_delay, 0, MAX_LOCK_DELAY_SECS)


def timeout_secs(timeout: Any) -> int:
    """A session's timeout: whole seconds, 5 to 3600."""
    return whole_secs("timeout", timeout, MIN_TIMEOUT_SECS, MAX_TIMEOUT_SECS)


def client_id_value(client_id: Any) -> str:
    """A client id: a string of 1 to 255 characters after trimming."""
    if not isinstance(client_id, str) or not 1 <= len(client_id.strip()) <= 255:
        raise InvalidRequest("client_id", "must be a string of 1 to 255 characters after trimming whitespace")
    return client_id.strip()


def resource_value(resource: Any) -> str:
    """A resource name: 1 to 255 bytes of UTF-8, no control characters, no leading or trailing whitespace."""
    ok = isinstance(resource, str) and 1 <= len(resource.encode("utf-8")) <= 255 and resource == resource.strip() \
        and not any(ord(c) < 0x20 or 0x7F <= ord(c) < 0xA0 for c in resource)
    if not ok:
        raise InvalidRequest("resource", "must be 1 to 255 bytes of UTF-8 without control characters or "
                                         "leading or trailing whitespace")
    return str(resource)


def mode_value(mode: Any) -> str:
    """A lock's mode: ``"exclusive"`` or ``"shared"``."""
    if mode not in MODES:
        raise InvalidRequest("mode", 'must be "exclusive" or "shared"')
    return str(mode)


def limit_value(limit: Any, mode: str) -> Optional[int]:
    """A shared lock's limit: None (no limit, or the resource's), or an integer from 1 to 10,000, only when shared."""
    if limit is None:
        return None
    if mode != "shared":
        raise InvalidRequest("limit", 'is only for mode "shared"')
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_LIMIT:
        raise InvalidRequest("limit", f"must be an integer from 1 to {MAX_LIMIT}")
    return limit


def grant_value(value: Any) -> Optional[str]:
    """A value stored with a grant: None, or a string of at most 1,024 bytes of UTF-8."""
    if value is None:
        return None
    if not isinstance(value, str) or len(value.encode("utf-8")) > MAX_VALUE_BYTES:
        raise InvalidRequest("value", f"must be a string of at most {MAX_VALUE_BYTES} bytes of UTF-8")
    return value


def fence_token_value(fence_token: Any) -> int:
    """A fence token: an integer of at least 1."""
    if isinstance(fence_token, bool) or not isinstance(fence_token, int) or fence_token < 1:
        raise InvalidRequest("fence_token", "must be an integer of at least 1")
    return fence_token


def prefix_value(prefix: Any) -> Optional[str]:
    """A watch's resource prefix: "" (every change) or 1 to 255 bytes of UTF-8 without control characters."""
    if not isinstance(prefix, str) or len(prefix.encode("utf-8")) > 255 \
            or any(ord(c) < 0x20 or 0x7F <= ord(c) < 0xA0 for c in prefix):
        raise InvalidRequest("resource", "a prefix is at most 255 bytes of UTF-8, without control characters")
    return prefix or None


def ask_for(left: float) -> int:
    """The ``wait`` one attempt asks for when ``left`` seconds remain: rounded up, 0 once nothing is left."""
    if left <= 0:
        return 0
    return min(math.ceil(left), MAX_WAIT_SECS)


def call_time(wait: float, answer_time: float, retry_budget: float) -> float:
    """How long a waiting call may go on in all: the wait plus ``answer_time``, never less than ``retry_budget``."""
    return max(wait + answer_time, retry_budget)
