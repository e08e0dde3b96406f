"""The blocking API against real clusters."""

from __future__ import annotations

import threading
import time
import uuid
from typing import Any, List, Tuple

import httpx
import pytest
from conftest import Cluster, eventually

import lockio
from lockio._retry import Safety
from lockio._transport import Request


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def test_a_lock_held_by_two_threads_in_turn_with_increasing_fence_tokens(cluster: Cluster) -> None:
    client = lockio.Client(cluster.endpoints())
    resource = unique("turns")
    entries: List[Tuple[str, int]] = []
    inside = threading.Lock()
    errors: List[BaseException] = []

    def worker(name: str) -> None:
        try:
            with client.session(name, timeout=10) as session:
                for _ in range(3):
                    with session.lock(resource, wait=20) as lock:
                        assert inside.acquire(blocking=False), "two holders inside the block"
                        entries.append((name, lock.fence_token))
                        time.sleep(0.05)
                        inside.release()
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(f"worker-{n}",)) for n in (1, 2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    tokens = [t for _, t in entries]
    assert len(entries) == 6 and {n for n, _ in entries} == {"worker-1", "worker-2"}
    assert tokens == sorted(tokens) and len(set(tokens)) == 6, entries
    client.close()


def test_a_held_lock_raises_lock_held_and_the_block_is_not_entered(cluster: Cluster) -> None:
    resource = unique("held")
    with lockio.Client(cluster.endpoints()) as client, client.session("holder", timeout=10) as a, \
            client.session("other", timeout=10) as b:
        with a.lock(resource) as held:
            assert held.newly_granted and held.held and not held.lost.is_set()
            entered = False
            with pytest.raises(lockio.LockHeld) as info:
                with b.lock(resource):
                    entered = True
            assert not entered
            e = info.value
            assert (e.code, e.status, e.resource, e.holder_client_id, e.holder_fence_token) == (
                "LOCK_HELD", 409, resource, "holder", held.fence_token)
            assert e.waited is None and e.held_since > 0
            # The same session asking again through a second lock object is refused by the client.
            with pytest.raises(lockio.AlreadyLocked):
                a.lock(resource)
            status = client.lock_status(resource)
            assert status.holder is not None and status.holder.session_id == a.id
        assert client.lock_status(resource).holder is None
        with b.lock(resource) as second:
            assert second.fence_token > held.fence_token


def test_waiting_in_a_queue(cluster: Cluster) -> None:
    resource = unique("queue")
    client = lockio.Client(cluster.endpoints())
    order: List[Tuple[str, int, float]] = []
    with client.session("head", timeout=10) as head:
        first = head.lock(resource)

        def waiter(name: str) -> None:
            with client.session(name, timeout=10) as s, s.lock(resource, wait=20) as lock:
                order.append((name, lock.fence_token, lock.waited))

        b = threading.Thread(target=waiter, args=("second",))
        b.start()
        eventually(10, "second in the queue", lambda: client.lock_status(resource).queue_length == 1 or None)
        c = threading.Thread(target=waiter, args=("third",))
        c.start()
        status = eventually(10, "third in the queue",
                            lambda: (lambda s: s if s.queue_length == 2 else None)(client.lock_status(resource)))
        assert [w.client_id for w in status.waiters] == ["second", "third"]
        # A wait that runs out is LockHeld with how long it waited.
        with client.session("impatient", timeout=10) as impatient:
            started = time.monotonic()
            with pytest.raises(lockio.LockHeld) as info:
                impatient.lock(resource, wait=1)
            assert info.value.waited is not None and info.value.waited >= 0.9
            assert 0.9 <= time.monotonic() - started < 5
            # A try-lock does not jump the queue.
            with pytest.raises(lockio.LockHeld) as info:
                impatient.lock(resource)
            assert info.value.queue_length == 2
        first.release()
        b.join(30)
        c.join(30)
    assert [n for n, _, _ in order] == ["second", "third"]
    assert first.fence_token < order[0][1] < order[1][1]
    assert all(w > 0 for _, _, w in order)
    client.close()


def test_status_stats_and_validation(cluster: Cluster) -> None:
    with lockio.Client(cluster.endpoints()) as client:
        status = client.status()
        assert status.state in ("LEADER", "FOLLOWER") and status.leader is not None and len(status.members) == 3
        stats = client.stats()
        assert stats.active_sessions >= 0 and stats.fence_counter >= 0
        with client.session("validate", timeout=5) as s:
            with pytest.raises(lockio.InvalidRequest) as info:
                s.lock(" padded ")
            assert info.value.field == "resource"
            with pytest.raises(lockio.InvalidRequest):
                s.lock("r", wait=301)


def raw(client: lockio.Client, method: str, path: List[str], **kw: Any) -> lockio.Error:
    """A request through the client's transport, whose error answer is mapped as every call's is."""
    answer = client._transport.send(Request(method, path, Safety.REPEATABLE, **kw))
    with pytest.raises(lockio.Error) as info:
        answer.ok()
    return info.value


def test_error_codes_from_a_real_server(cluster: Cluster) -> None:
    resource = unique("codes")
    with lockio.Client(cluster.endpoints()) as client, client.session("codes", timeout=10) as s:
        gone = str(uuid.uuid4())
        e = raw(client, "POST", ["sessions", gone, "keepalive"])
        assert isinstance(e, lockio.SessionNotFound) and e.session_id == gone and e.status == 404
        e = raw(client, "DELETE", ["sessions", s.id, "locks", resource], query={"fence_token": "1"})
        assert isinstance(e, lockio.LockNotHeld) and e.resource == resource
        lock = s.lock(resource)
        e = raw(client, "DELETE", ["sessions", s.id, "locks", resource], query={"fence_token": str(lock.fence_token + 1)})
        assert isinstance(e, lockio.FenceTokenMismatch) and e.held_fence_token == lock.fence_token
        lock.release()
        e = raw(client, "POST", ["sessions"], body={"client_id": "x", "timeout": 1})
        assert isinstance(e, lockio.InvalidRequest) and e.field == "timeout" and e.status == 400
        e = raw(client, "POST", ["sessions", s.id, "locks", resource], body={"mode": "writer"})
        assert isinstance(e, lockio.InvalidRequest) and e.field == "mode"
        lock = s.lock(resource)
        e = raw(client, "POST", ["sessions", s.id, "locks", resource], body={"mode": "shared"})
        assert isinstance(e, lockio.ModeConflict) and e.mode == "exclusive" and e.status == 409
        lock.release()
        assert isinstance(raw(client, "GET", ["no", "such", "route"]), lockio.NotFound)
        assert isinstance(raw(client, "PUT", ["sessions"]), lockio.MethodNotAllowed)
        e = raw(client, "POST", ["sessions"], body={"client_id": "x" * 70000})
        assert isinstance(e, lockio.PayloadTooLarge) and e.status == 413
    # A body that is not JSON goes around the client, which always sends JSON; the mapping is the same.
    r = httpx.post(cluster.url(1, "/sessions"), content=b"client_id=x", headers={"Content-Type": "text/plain"})
    e = lockio._errors.from_answer("n", r.status_code, r.json())
    assert isinstance(e, lockio.UnsupportedMediaType) and e.status == 415


def test_failover_when_one_node_is_down(fresh_cluster: Cluster) -> None:
    c = fresh_cluster
    dead = c.wait_for_leader()
    c.kill(dead)
    c.wait_for_leader()
    # The dead node first: every call goes on to the others, and a create (refused connection,
    # certainly not sent) is safe to send again.
    endpoints = c.endpoints([dead] + [i for i in c.ids if i != dead])
    with lockio.Client(endpoints) as client:
        with client.session("survivor", timeout=10) as s, s.lock("failover") as lock:
            assert lock.fence_token >= 1
            assert client.stats().total_locks == 1
            assert client.lock_status("failover").holder is not None
        # Once the leader is known it is preferred: the dead endpoint is no longer tried first.
        eventually(5, "the leader preferred", lambda: client._transport.endpoints.leader_known() or None)
        assert client._transport.endpoints.round()[0] != 0
    # Only the dead node: Unavailable, naming it; nothing was sent, so the outcome is known.
    with lockio.Client(c.endpoints([dead]), retry_budget=2) as client:
        with pytest.raises(lockio.Unavailable) as info:
            client.session("nobody", timeout=10)
        assert not info.value.outcome_unknown and info.value.tried[0][0] == c.endpoints([dead])[0]


def test_a_session_is_kept_alive_across_a_leader_kill(fresh_cluster: Cluster) -> None:
    c = fresh_cluster
    seen: List[lockio.SessionState] = []
    with lockio.Client(c.endpoints()) as client, client.session("steady", timeout=5) as s:
        lock = s.lock("steady-lock")
        leader = c.wait_for_leader()
        c.kill(leader)
        # Past the session's whole timeout: a new leader gives it a full timeout, keepalives reach it.
        end = time.monotonic() + 7
        while time.monotonic() < end:
            seen.append(s.state)
            assert s.state is not lockio.SessionState.EXPIRED and not s.lost.is_set()
            time.sleep(0.1)
        c.wait_for_leader()
        eventually(5, "alive", lambda: s.state is lockio.SessionState.ALIVE or None)
        holder = client.lock_status("steady-lock").holder
        assert holder is not None and holder.session_id == s.id and holder.fence_token == lock.fence_token
        lock.release()
    assert seen[-1] is lockio.SessionState.ALIVE


def test_blocked_keepalives_put_the_session_in_jeopardy_then_expire_it(fresh_cluster: Cluster) -> None:
    c = fresh_cluster
    lost_calls: List[lockio.Expiry] = []
    client = lockio.Client(c.endpoints(), request_timeout=2)
    s = client.session("paused", timeout=5, lock_delay=2, on_lost=lost_calls.append)
    seen: List[lockio.SessionState] = []
    learned = False
    try:
        with pytest.raises(lockio.SessionExpired):
            with s.lock("paused-lock") as lock:
                token = lock.fence_token
                for i in c.ids:
                    c.pause(i)
                deadline = time.monotonic() + 10
                while not lock.lost.wait(0.05):
                    state = s.state
                    if not seen or seen[-1] is not state:
                        seen.append(state)
                    assert time.monotonic() < deadline, seen
                learned = True
                assert not lock.held
                with pytest.raises(lockio.SessionExpired):
                    lock.check()
                # Leaving the block raises SessionExpired: the work may have overlapped.
        assert learned
        if seen[-1] is not lockio.SessionState.EXPIRED:
            seen.append(s.state)
        assert seen == [lockio.SessionState.ALIVE, lockio.SessionState.IN_JEOPARDY, lockio.SessionState.EXPIRED]
        assert s.expiry is lockio.Expiry.TIMED_OUT and lost_calls == [lockio.Expiry.TIMED_OUT]
        with pytest.raises(lockio.SessionExpired):
            s.lock("paused-lock")
    finally:
        c.resume_all()
    # The next holder gets a higher token (once the cluster expired the session, after its lock-delay,
    # or once the release tried in the background landed), and the cluster confirms the expiry.
    with client.session("next", timeout=10) as other:
        with other.lock("paused-lock", wait=20) as lock:
            assert lock.fence_token > token

        # Read, not a keepalive: a keepalive would keep a session the cluster has not expired yet alive.
        info = Request("GET", ["sessions", s.id], Safety.REPEATABLE)
        eventually(15, "the cluster expires the session",
                   lambda: client._transport.send(info).ok().body.get("is_expired") or None)
        e = raw(client, "POST", ["sessions", s.id, "keepalive"])
        assert isinstance(e, lockio.SessionExpired) and e.status == 410 and e.session_id == s.id
    s.close()
    client.close()
