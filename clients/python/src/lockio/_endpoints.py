"""The cluster's endpoints: parsing them, the order a call tries them in, and which one to prefer.

Pure, copied from the Rust client (crates/client/src/endpoints.rs).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Iterable, List, Optional
from urllib.parse import urlsplit

from ._errors import InvalidRequest


@dataclass(frozen=True)
class Endpoint:
    """One node's HTTP API: ``base`` (``http://host:port``) and ``authority`` (``host:port``)."""

    base: str
    authority: str

    @staticmethod
    def parse(raw: str) -> Endpoint:
        """Accept ``host:port``, ``http://host:port`` (or ``https://`` with TLS), either with a trailing ``/``."""
        def invalid(reason: str) -> InvalidRequest:
            return InvalidRequest("endpoints", f"`{raw}` {reason}")

        trimmed = raw.strip() if isinstance(raw, str) else ""
        if not trimmed:
            raise invalid("is empty")
        with_scheme = trimmed if "://" in trimmed else f"http://{trimmed}"
        try:
            url = urlsplit(with_scheme)
            port = url.port
        except ValueError as e:
            raise invalid(f"is not an address: {e}") from None
        if url.scheme not in ("http", "https"):
            raise invalid("must be http:// or https://")
        host = url.hostname
        if not host:
            raise invalid("is not an address: no host")
        if url.path not in ("", "/") or url.query or url.fragment or url.username is not None:
            raise invalid("must be only a host and port")
        if port is None:
            port = 443 if url.scheme == "https" else 80
        shown_host = f"[{host}]" if ":" in host else host
        authority = f"{shown_host}:{port}"
        return Endpoint(base=f"{url.scheme}://{authority}", authority=authority)


class Endpoints:
    """The configured endpoints and the current preference among them (thread-safe)."""

    def __init__(self, raw: Iterable[str]) -> None:
        if isinstance(raw, str):
            raw = raw.split(",")
        parsed: List[Endpoint] = []
        for item in raw:
            endpoint = Endpoint.parse(item)
            if endpoint not in parsed:
                parsed.append(endpoint)
        if not parsed:
            raise InvalidRequest("endpoints", "no endpoint given")
        self.list = parsed
        self._lock = threading.Lock()
        self._first = 0
        # `_first` is the leader as /cluster/status last named it, not just a node that answered.
        self._is_leader = False

    def round(self) -> List[int]:
        """The order of one round of attempts: the preferred endpoint, then the others in the given order."""
        with self._lock:
            first = self._first
        n = len(self.list)
        return [(first + i) % n for i in range(n)]

    def leader_known(self) -> bool:
        """Whether the preferred endpoint is known to be the leader."""
        with self._lock:
            return self._is_leader

    def answered(self, index: int) -> bool:
        """Prefer ``index``, which answered after the preferred one did not; true when the preference changed."""
        with self._lock:
            if self._first == index:
                return False
            self._first, self._is_leader = index, False
            return True

    def failed(self, index: int) -> None:
        """The endpoint failed (unreachable or 503): whoever it was, it is not a leader we can use now."""
        with self._lock:
            if self._first == index:
                self._is_leader = False

    def leader_is(self, leader_http: str) -> None:
        """Prefer the configured endpoint whose ``host:port`` is the leader's advertised HTTP address."""
        for index, e in enumerate(self.list):
            if e.authority == leader_http:
                with self._lock:
                    self._first, self._is_leader = index, True
                return


def leader_http(status: object) -> Optional[str]:
    """The leader's advertised HTTP address in a ``/cluster/status`` body."""
    if not isinstance(status, dict):
        return None
    leader = status.get("leader_id")
    members = status.get("members")
    if not isinstance(leader, int) or not isinstance(members, list):
        return None
    for m in members:
        if isinstance(m, dict) and m.get("id") == leader:
            http = m.get("http")
            return http if isinstance(http, str) else None
    return None
