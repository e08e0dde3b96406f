"""The pure rules, as tables: copied from the Rust client's unit tests so both clients behave alike."""

from __future__ import annotations

import socket
import threading
import time
from typing import Any, Dict, List, Tuple, Type

import pytest

import lockio
from lockio._endpoints import Endpoint, Endpoints, leader_http
from lockio._errors import from_answer
from lockio._lease import Expiry, Keepalive, Lease, SessionState
from lockio._retry import Failure, FailureKind, Safety, backoff, may_retry
from lockio._wait import ask_for, call_time, lock_delay_secs, wait_secs

S = "b8cfa9e0-7e3c-4546-a0e6-b4a6b9d6652d"


def test_endpoints_parse() -> None:
    ok = [
        ("127.0.0.1:5000", "http://127.0.0.1:5000", "127.0.0.1:5000"),
        ("http://127.0.0.1:5000", "http://127.0.0.1:5000", "127.0.0.1:5000"),
        (" http://localhost:5001/ ", "http://localhost:5001", "localhost:5001"),
        ("lock-node-2", "http://lock-node-2:80", "lock-node-2:80"),
        ("[::1]:5000", "http://[::1]:5000", "[::1]:5000"),
        ("https://lock-1:5443", "https://lock-1:5443", "lock-1:5443"),
    ]
    for raw, base, authority in ok:
        e = Endpoint.parse(raw)
        assert (e.base, e.authority) == (base, authority), raw
    bad = [("", "is empty"), ("127.0.0.1:5000/sessions", "only a host and port"),
           ("127.0.0.1:99999", "is not an address"), ("http://", "is not an address"), ("ftp://x:1", "http://")]
    for raw, reason in bad:
        with pytest.raises(lockio.InvalidRequest) as info:
            Endpoint.parse(raw)
        assert reason in str(info.value) and info.value.field == "endpoints", raw


def test_duplicates_collapse_and_an_empty_list_is_refused() -> None:
    assert len(Endpoints(["127.0.0.1:5000", "http://127.0.0.1:5000/", "127.0.0.1:5001"]).list) == 2
    assert len(Endpoints("127.0.0.1:5000,127.0.0.1:5001").list) == 2
    with pytest.raises(lockio.InvalidRequest):
        Endpoints([])


def test_rounds_start_at_the_preferred_endpoint() -> None:
    e = Endpoints(["a:1", "b:1", "c:1"])
    script: List[Tuple[str, Any, List[int], bool]] = [
        ("answered", 0, [0, 1, 2], False),
        ("answered", 1, [1, 2, 0], False),
        ("leader", "c:1", [2, 0, 1], True),
        ("answered", 2, [2, 0, 1], True),
        ("leader", "elsewhere:1", [2, 0, 1], True),
        ("failed", 0, [2, 0, 1], True),
        ("failed", 2, [2, 0, 1], False),
        ("answered", 0, [0, 1, 2], False),
    ]
    for step, (event, arg, round_, leader) in enumerate(script):
        if event == "answered":
            e.answered(arg)
        elif event == "failed":
            e.failed(arg)
        else:
            e.leader_is(arg)
        assert (e.round(), e.leader_known()) == (round_, leader), step


def test_the_leader_is_found_in_cluster_status() -> None:
    members = [{"id": 1, "http": "127.0.0.1:5000"}, {"id": 2, "http": "127.0.0.1:5001"}, {"id": 3, "http": None}]
    for leader_id, expected in [(2, "127.0.0.1:5001"), (3, None), (None, None), (4, None)]:
        assert leader_http({"leader_id": leader_id, "members": members}) == expected


def test_what_may_be_retried() -> None:
    not_sent = Failure(FailureKind.NOT_SENT, "connection refused")
    not_applied = Failure(FailureKind.UNAVAILABLE, "no leader", outcome_unknown=False)
    unknown = Failure(FailureKind.UNAVAILABLE, "no quorum", outcome_unknown=True)
    lost = Failure(FailureKind.LOST, "timed out")
    table = [
        (Safety.REPEATABLE, not_sent, True), (Safety.REPEATABLE, not_applied, True),
        (Safety.REPEATABLE, unknown, True), (Safety.REPEATABLE, lost, True),
        (Safety.AT_MOST_ONCE, not_sent, True), (Safety.AT_MOST_ONCE, not_applied, True),
        (Safety.AT_MOST_ONCE, unknown, False), (Safety.AT_MOST_ONCE, lost, False),
    ]
    for safety, failure, expected in table:
        assert may_retry(safety, failure) is expected, (safety, failure)


def test_backoff_is_bounded() -> None:
    table = [(0, None, 0.25), (1, None, 0.5), (2, None, 1.0), (3, None, 2.0), (40, None, 2.0),
             (0, 1.0, 1.0), (0, 3600.0, 2.0)]
    for round_, retry_after, expected in table:
        assert backoff(round_, retry_after) == expected


def test_a_session_lease_over_time() -> None:
    """A 6 s timeout and 2 s interval, created at t=0: (ms, event, state after, next keepalive at ms)."""
    A, J, X = SessionState.ALIVE, SessionState.IN_JEOPARDY, SessionState.EXPIRED
    scripts: List[List[Tuple[int, Any, SessionState, int]]] = [
        [(1000, "tick", A, 2000), (2050, ("acked", 2000), A, 4000), (4100, ("acked", 4000), A, 6000)],
        [(2100, "failed", J, 2600), (3000, "failed", J, 3500), (5900, "failed", J, 6000),
         (6000, "tick", X, 6000), (6100, ("acked", 5950), X, 6000)],
        [(2100, "failed", J, 2600), (2700, ("acked", 2600), A, 4600), (8000, "tick", A, 4600),
         (8600, "tick", X, 8600)],
        [(7000, ("acked", 500), X, 6500)],
        [(4100, ("acked", 4000), A, 6000), (4200, ("acked", 2000), A, 6000)],
        [(2000, "gone", X, 6000), (2100, ("acked", 2050), X, 6000)],
        [(1000, "close", X, 6000), (1500, "gone", X, 6000)],
    ]
    for n, script in enumerate(scripts):
        lease = Lease(0.0, 6.0, 2.0)
        for step, (at, event, state, nxt) in enumerate(script):
            now = at / 1000
            if event == "tick":
                got = lease.at(now)
            elif event == "failed":
                got = lease.record(Keepalive.FAILED, now)
            elif event == "gone":
                got = lease.record(Keepalive.GONE, now)
            elif event == "close":
                lease.close()
                got = lease.state
            else:
                got = lease.record(Keepalive.ACKED, now, event[1] / 1000)
            assert got is state, (n, step)
            assert lease.next_keepalive(now) == pytest.approx(nxt / 1000), (n, step)
    lease = Lease(0.0, 6.0, 2.0)
    lease.record(Keepalive.GONE, 1.0)
    assert lease.expiry is Expiry.CONFIRMED
    lease = Lease(0.0, 6.0, 2.0)
    lease.at(7.0)
    assert lease.expiry is Expiry.TIMED_OUT


def test_a_keepalive_attempt_never_outlives_the_deadline() -> None:
    lease = Lease(0.0, 6.0, 2.0)
    assert lease.attempt_deadline(0.0, 10.0) == 2.0
    assert lease.attempt_deadline(5.0, 10.0) == 6.0
    assert Lease(0.0, 3600.0, 1200.0).attempt_deadline(0.0, 10.0) == 10.0


def test_waits_and_lock_delays_are_whole_seconds_in_range() -> None:
    table: List[Tuple[Any, Any, Any]] = [(0, 0, 0), (1, 1, 1), (60, 60, 60), (61, 61, None), (300, 300, None),
                                         (301, None, None), (1.5, None, None), (True, None, None), ("5", None, None)]
    for value, wait, delay in table:
        for check, expected in ((wait_secs, wait), (lock_delay_secs, delay)):
            if expected is None:
                with pytest.raises(lockio.InvalidRequest):
                    check(value)
            else:
                assert check(value) == expected
    with pytest.raises(lockio.InvalidRequest, match="invalid wait: must be whole seconds from 0 to 300"):
        wait_secs(301)


def test_each_attempt_asks_for_what_is_left_rounded_up() -> None:
    for left, secs in [(0, 0), (-1, 0), (0.001, 1), (0.999, 1), (1.0, 1), (1.001, 2), (29.5, 30), (400, 300)]:
        assert ask_for(left) == secs
    assert call_time(30, 10, 20) == 40
    assert call_time(1, 10, 20) == 20


def test_values_are_checked_before_sending() -> None:
    # An address nothing listens on: a refused value never gets as far as trying it.
    client = lockio.Client(["127.0.0.1:9"], retry_budget=0.5)
    for kwargs, field in [({"timeout": 4}, "timeout"), ({"timeout": 3601}, "timeout"), ({"timeout": 5.5}, "timeout"),
                          ({"lock_delay": 61}, "lock_delay"), ({"client_id": "  "}, "client_id")]:
        args: Dict[str, Any] = {"client_id": "c", **kwargs}
        with pytest.raises(lockio.InvalidRequest) as info:
            client.session(**args)
        assert info.value.field == field and info.value.code == "INVALID_REQUEST"
    client.close()


# Every error answer of docs/http-api.md, the class it maps to, its fields and its one-line text.
ANSWERS: List[Tuple[int, Dict[str, Any], Type[lockio.Error], Dict[str, Any], str]] = [
    (409, {"acquired": False, "code": "LOCK_HELD", "error": "…", "held_since": 1795736305.768, "holders_count": 1,
           "holder_client_id": "test-client-1", "holder_fence_token": 1, "resource": "resource-1", "queue_length": 0},
     lockio.LockHeld, {"resource": "resource-1", "holder_client_id": "test-client-1", "holder_fence_token": 1,
                       "held_since": 1795736305.768, "waited": None, "queue_length": 0},
     "resource-1 is held by client test-client-1 since 2026-11-26T23:38:25Z with fence token 1"),
    (409, {"acquired": False, "code": "LOCK_HELD", "error": "…", "held_since": 1795736305.768, "holders_count": 1,
           "holder_client_id": "billing-7", "holder_fence_token": 41, "resource": "orders", "queue_length": 2,
           "waited": 30.04},
     lockio.LockHeld, {"waited": 30.04, "queue_length": 2},
     "orders is held by client billing-7 since 2026-11-26T23:38:25Z with fence token 41; gave up after waiting 30.0s;"
     " 2 sessions are waiting for it"),
    (409, {"acquired": False, "code": "LOCK_DELAYED", "error": "…", "available_at": 1795736305.5, "resource": "orders",
           "queue_length": 0},
     lockio.LockDelayed, {"available_at": 1795736305.5, "resource": "orders"},
     "orders is unavailable until 2026-11-26T23:38:25Z (lock-delay after its holder's session expired)"),
    (409, {"acquired": False, "code": "QUEUE_FULL", "error": "…", "resource": "orders", "queue_length": 10000},
     lockio.QueueFull, {"queue_length": 10000}, "orders has 10000 sessions waiting, as many as its queue takes"),
    (409, {"acquired": False, "code": "MODE_CONFLICT", "error": "…", "resource": "orders", "mode": "shared"},
     lockio.ModeConflict, {"mode": "shared"}, "this session has orders in mode shared; it cannot ask in the other mode"),
    (409, {"acquired": False, "code": "LIMIT_MISMATCH", "error": "…", "resource": "pool", "limit": 3},
     lockio.LimitMismatch, {"limit": 3}, "pool is shared with a limit of 3"),
    (409, {"acquired": False, "code": "WAIT_TIMEOUT", "error": "…", "waited": 30.0},
     lockio.WaitTimeout, {"waited": 30.0}, ""),
    (410, {"acquired": False, "code": "SESSION_EXPIRED", "error": "…", "session_id": S},
     lockio.SessionExpired, {"session_id": S}, f"session {S} has expired and its locks were released"),
    (404, {"code": "SESSION_NOT_FOUND", "error": "…", "session_id": S},
     lockio.SessionNotFound, {"session_id": S}, f"session {S} does not exist"),
    (404, {"code": "LOCK_NOT_HELD", "error": "…", "released": False, "resource": "r", "session_id": S},
     lockio.LockNotHeld, {"resource": "r"}, f"session {S} does not hold r"),
    (409, {"code": "FENCE_TOKEN_MISMATCH", "error": "…", "fence_token": 2, "held_fence_token": 3, "resource": "r",
           "session_id": S},
     lockio.FenceTokenMismatch, {"fence_token": 2, "held_fence_token": 3}, f"session {S} holds r under fence token 3, not 2"),
    (409, {"code": "NOT_WAITING", "error": "Session x is not waiting for resource r"}, lockio.NotWaiting, {}, ""),
    (400, {"code": "INVALID_REQUEST", "error": "timeout must be an integer from 5 to 3600 (seconds)", "field": "timeout"},
     lockio.InvalidRequest, {"field": "timeout"}, "invalid timeout: timeout must be an integer from 5 to 3600 (seconds)"),
    (415, {"code": "UNSUPPORTED_MEDIA_TYPE", "error": "Content-Type must be application/json"},
     lockio.UnsupportedMediaType, {}, "Content-Type must be application/json"),
    (413, {"code": "PAYLOAD_TOO_LARGE", "error": "too large"}, lockio.PayloadTooLarge, {}, "too large"),
    (404, {"code": "NOT_FOUND", "error": "No such route"}, lockio.NotFound, {}, "No such route"),
    (405, {"code": "METHOD_NOT_ALLOWED", "error": "no"}, lockio.MethodNotAllowed, {}, "no"),
    (500, {"code": "INTERNAL", "error": "Internal error"}, lockio.InternalError, {}, "Internal error"),
    (503, {"code": "UNAVAILABLE", "error": "no quorum", "outcome": "unknown"}, lockio.Unavailable,
     {"outcome_unknown": True}, ""),
    (503, {"code": "UNAVAILABLE", "error": "no leader", "outcome": "not_applied"}, lockio.Unavailable,
     {"outcome_unknown": False}, ""),
    (502, {"nothing": "useful"}, lockio.UnexpectedResponse, {},
     "unexpected answer from n:1: status 502 without a lock.io error body"),
    (409, {"code": "LOCK_HELD", "error": "held"}, lockio.UnexpectedResponse, {"code": "LOCK_HELD"},
     "unexpected answer from n:1: 409 LOCK_HELD: held"),
    (418, {"code": "TEAPOT", "error": "short and stout"}, lockio.UnexpectedResponse, {"code": "TEAPOT"},
     "unexpected answer from n:1: 418 TEAPOT: short and stout"),
]


@pytest.mark.parametrize("status,body,cls,fields,text", ANSWERS)
def test_error_answers_map_to_errors(status: int, body: Dict[str, Any], cls: Type[lockio.Error],
                                     fields: Dict[str, Any], text: str) -> None:
    error = from_answer("n:1", status, body)
    assert type(error) is cls
    assert isinstance(error, lockio.Error)
    assert error.status == status
    if cls is not lockio.UnexpectedResponse:
        assert error.code == body["code"] and error.body == body
    for name, value in fields.items():
        assert getattr(error, name) == value, name
    if text:
        assert str(error) == text


def test_every_code_of_the_contract_is_mapped() -> None:
    import re
    from pathlib import Path
    contract = (Path(__file__).resolve().parents[3] / "docs/http-api.md").read_text()
    codes = set(re.findall(r"^\| \d{3} \| `([A-Z_]+)` \|", contract, re.M))
    assert len(codes) >= 15, codes
    assert codes <= set(lockio.ERRORS_BY_CODE), codes - set(lockio.ERRORS_BY_CODE)
    assert codes <= {code for _, b, *_ in ANSWERS for code in [b.get("code")]}
    for cls in (lockio.LockHeld, lockio.LockDelayed, lockio.QueueFull, lockio.WaitTimeout):
        assert issubclass(cls, lockio.LockNotAcquired)


def test_unavailable_names_every_endpoint_tried() -> None:
    e = lockio.Unavailable([("127.0.0.1:5000", "connection refused"), ("127.0.0.1:5001", "503: no leader is known")], False)
    assert str(e) == ("lock.io cluster unavailable: tried 127.0.0.1:5000 (connection refused), "
                      "127.0.0.1:5001 (503: no leader is known)")
    assert str(lockio.Unavailable([], True)).endswith("; the operation may or may not have taken effect")


class BlackHole:
    """A TCP listener that accepts connections and reads requests but never answers: a node that went silent."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.address = f"127.0.0.1:{self.sock.getsockname()[1]}"
        self.requests: List[bytes] = []
        self.conns: List[socket.socket] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.conns.append(conn)
            conn.settimeout(5)
            try:
                self.requests.append(conn.recv(65536))
            except OSError:
                pass

    def close(self) -> None:
        self.sock.close()
        for c in self.conns:
            c.close()


def test_a_create_whose_outcome_is_unknown_is_never_sent_again() -> None:
    """The create reached a node that then went silent: not repeated there, nor on the next endpoint."""
    first, second = BlackHole(), BlackHole()
    try:
        client = lockio.Client([first.address, second.address], request_timeout=0.5, retry_budget=5)
        start = time.monotonic()
        with pytest.raises(lockio.Unavailable) as info:
            client.session("once-only", timeout=10)
        assert info.value.outcome_unknown
        assert [e for e, _ in info.value.tried] == [first.address]
        assert time.monotonic() - start < 2
        assert len(first.requests) == 1 and first.requests[0].startswith(b"POST /sessions ")
        assert second.requests == []
        # A read is retried on the other endpoint and, within its budget, on later rounds.
        client2 = lockio.Client([first.address, second.address], request_timeout=0.3, retry_budget=3, rounds=2)
        with pytest.raises(lockio.Unavailable) as info:
            client2.stats()
        assert not info.value.outcome_unknown
        assert {e for e, _ in info.value.tried} == {first.address, second.address}
        client.close()
        client2.close()
    finally:
        first.close()
        second.close()


def test_a_refused_connection_is_tried_on_the_next_endpoint_and_reported() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = f"127.0.0.1:{s.getsockname()[1]}"
    client = lockio.Client([dead], retry_budget=2, rounds=2)
    with pytest.raises(lockio.Unavailable) as info:
        client.session("nobody-home", timeout=10)
    # Nothing was sent, so the create could be (and was) tried again; its outcome is known.
    assert not info.value.outcome_unknown
    assert info.value.tried[0][0] == dead
    client.close()


def test_event_ids_parse_order_and_print() -> None:
    from lockio import EventId
    assert EventId.parse("9.5") < EventId.parse("9") < EventId.parse("10.0") < EventId.parse("10.1")
    assert EventId.parse("120.2") < EventId.parse("121.0") and EventId.parse("2.0") < EventId.parse("10.0")
    for raw in ("0", "12.0", "12.3"):
        assert str(EventId.parse(raw)) == raw
    for bad in ("", "a", "1.", "1.2.3", "-1", "1.4294967295", "1-2", " 1", "١"):
        with pytest.raises(lockio.InvalidRequest) as info:
            EventId.parse(bad)
        assert info.value.field == "after", bad
    with pytest.raises(lockio.InvalidRequest):
        lockio.Client("127.0.0.1:1").watch("p", after="x")


def test_server_sent_events_are_read_line_by_line() -> None:
    from lockio._watch import SseParser
    p = SseParser()
    lines = [": keep-alive", "", "id: 4.0", 'data: {"type":"lock_released",', 'data: "id":"4.0"}', "",
             "data:{\"type\":\"progress\",\"current\":\"9\"}\r", "", "data: not json", "", "event: x", ""]
    out = [v for v in (p.line(line) for line in lines) if v is not None]
    assert out == [{"type": "lock_released", "id": "4.0"}, {"type": "progress", "current": "9"}]


def test_a_watch_skips_progress_repeats_and_node_events_and_raises_compacted() -> None:
    from lockio import EventId
    watch = lockio.Client(["127.0.0.1:1", "127.0.0.1:2"]).watch("orders-", after="5.1")
    assert watch._request().query == {"resource": "orders-", "after": "5.1"}

    def change(i: str, kind: str = "lock_acquired") -> Dict[str, Any]:
        return {"type": kind, "id": i, "at": 1.5, "resource": "orders-1", "session_id": S, "client_id": "c",
                "fence_token": 3, "mode": "shared", "value": "v"}

    assert watch._take(change("5.1")) and watch._take(change("5.0"))  # at or before the position: repeats
    assert watch._take({"type": "leader_changed", "at": 1.0, "leader_id": 2})  # a node event: not a change
    assert watch._pop() is None
    assert watch._take(change("6.0")) and watch._take({"type": "progress", "current": "9", "at": 2.0})
    event = watch._pop()
    assert event is not None
    assert (event.id, event.type, event.mode, event.value) == (EventId(6, 0), "lock_acquired", "shared", "v")
    # Progress delivers nothing, but a reconnect resumes after its `current`.
    assert watch._pop() is None and watch.position == EventId.parse("9")
    assert watch._request().query["after"] == "9"
    assert watch._take({"type": "progress", "current": "8.0", "at": 3.0}) and watch.position == EventId.parse("9")
    expired = {"type": "session_expired", "id": "9.1", "index": 9, "position": 1, "at": 4.0, "session_id": S,
               "client_id": "c", "released": [{"resource": "orders-1", "fence_token": 3}]}
    assert watch._take(expired) is True and watch._pop() is None  # 9.1 is before the end of entry 9
    assert watch._take(dict(expired, id="10.0"))
    ended = watch._pop()
    assert ended is not None and ended.released == [("orders-1", 3)] and ended.resource is None
    # Compacted: raised, and the watch goes on from `current`.
    assert not watch._take({"type": "compacted", "requested": "10.0", "oldest": "40", "current": "55.2", "at": 5.0})
    with pytest.raises(lockio.Compacted) as info:
        watch._pop()
    assert (info.value.requested, info.value.oldest, info.value.current) == (EventId(10, 0), EventId.parse("40"), EventId(55, 2))
    assert watch.position == EventId(55, 2) and watch._request().query["after"] == "55.2"
    # A change this client cannot read is UnexpectedResponse, not a silent skip.
    watch._take({"type": "lock_acquired", "id": "56.0", "at": "later"})
    with pytest.raises(lockio.UnexpectedResponse):
        watch._pop()
    with pytest.raises(lockio.InvalidRequest) as bad:
        lockio.Client("127.0.0.1:1").watch("bad\nprefix")
    assert bad.value.field == "resource"


def test_lock_options_are_checked_and_sent_only_when_not_the_default() -> None:
    from lockio._calls import LockOptions
    assert LockOptions.check("exclusive", None, None).body() is None
    assert LockOptions.check("shared", 3, "é" * 512).body() == {"mode": "shared", "limit": 3, "value": "é" * 512}
    for args, field in [(("writer", None, None), "mode"), (("exclusive", 2, None), "limit"), (("shared", 0, None), "limit"),
                        (("shared", 10_001, None), "limit"), (("shared", True, None), "limit"),
                        (("shared", None, "x" * 1025), "value"), (("shared", None, 7), "value")]:
        with pytest.raises(lockio.InvalidRequest) as info:
            LockOptions.check(*args)
        assert info.value.field == field, args
