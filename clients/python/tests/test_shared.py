"""Shared locks, semaphores, elections, fence checks and watches (the blocking API) against real clusters."""

from __future__ import annotations

import threading
import time
import uuid
from typing import Any, Callable, List, Optional, Tuple

import pytest
from conftest import Cluster, eventually

import lockio


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def in_thread(fn: Callable[[], Any]) -> Tuple[threading.Thread, List[Any]]:
    """Runs ``fn`` on a thread; the list gets its result or the exception it raised."""
    out: List[Any] = []

    def run() -> None:
        try:
            out.append(fn())
        except BaseException as e:
            out.append(e)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t, out


def test_readers_share_with_distinct_tokens_and_a_writer_waits(cluster: Cluster) -> None:
    resource = unique("shared")
    with lockio.Client(cluster.endpoints()) as client, client.session("reader-1", timeout=10) as r1, \
            client.session("reader-2", timeout=10) as r2, client.session("writer", timeout=10) as w, \
            client.session("reader-3", timeout=10) as r3:
        with r1.lock(resource, mode="shared", value="r1") as a, r2.lock(resource, mode="shared") as b:
            assert (a.mode, a.value, b.mode, b.value) == ("shared", "r1", "shared", None)
            assert a.fence_token != b.fence_token
            status = client.lock_status(resource)
            assert status.mode == "shared" and status.limit is None and status.holders_count == 2
            assert [(h.client_id, h.fence_token, h.value) for h in status.holders] == [
                ("reader-1", a.fence_token, "r1"), ("reader-2", b.fence_token, None)]
            # A writer is refused while readers hold it, then queues; a later reader queues behind it.
            with pytest.raises(lockio.LockHeld) as info:
                w.lock(resource)
            assert info.value.holders_count == 2
            t, got = in_thread(lambda: w.lock(resource, wait=20))
            eventually(10, "the writer queued", lambda: client.lock_status(resource).queue_length == 1 or None)
            with pytest.raises(lockio.LockHeld):
                r3.lock(resource, mode="shared")
            assert client.lock_status(resource).waiters[0].mode == "exclusive"
            a.release()
            time.sleep(0.3)
            assert not got, "the writer got in while a reader still held the lock"
        t.join(15)
        writer = got[0]
        assert isinstance(writer, lockio.Lock), writer
        assert writer.mode == "exclusive" and writer.fence_token > max(a.fence_token, b.fence_token)
        status = client.lock_status(resource)
        assert status.mode == "exclusive" and status.holders_count == 1 and status.holder is not None
        assert status.holder.session_id == w.id
        writer.release()
        with pytest.raises(lockio.InvalidRequest) as bad:
            r1.lock(resource, mode="reader")
        assert bad.value.field == "mode"
        with pytest.raises(lockio.InvalidRequest) as bad:
            r1.lock(resource, limit=2)
        assert bad.value.field == "limit"
        with pytest.raises(lockio.InvalidRequest) as bad:
            r1.lock(resource, value="x" * 1025)
        assert bad.value.field == "value"


def test_a_semaphore_admits_its_limit(cluster: Cluster) -> None:
    resource = unique("semaphore")
    with lockio.Client(cluster.endpoints()) as client:
        sessions = [client.session(f"permit-{n}", timeout=10) for n in range(4)]
        try:
            first, second = sessions[0].semaphore(resource, 2), sessions[1].semaphore(resource, 2)
            assert (first.mode, first.limit) == ("shared", 2) and first.fence_token != second.fence_token
            with pytest.raises(lockio.LockHeld) as info:
                sessions[2].semaphore(resource, 2)
            assert info.value.holders_count == 2
            with pytest.raises(lockio.LimitMismatch) as mismatch:
                sessions[2].semaphore(resource, 3)
            assert mismatch.value.limit == 2
            status = client.lock_status(resource)
            assert (status.mode, status.limit, status.holders_count) == ("shared", 2, 2)
            # The third waits for a permit and gets it when one is given back.
            t, got = in_thread(lambda: sessions[2].semaphore(resource, 2, wait=20))
            eventually(10, "a waiter", lambda: client.lock_status(resource).queue_length == 1 or None)
            with first:
                pass
            t.join(15)
            third = got[0]
            assert isinstance(third, lockio.Lock) and third.fence_token > second.fence_token, third
            assert client.lock_status(resource).holders_count == 2
            with pytest.raises(lockio.LockHeld):
                sessions[3].semaphore(resource, 2)
        finally:
            for s in sessions:
                s.close()


def test_election_one_leads_and_the_next_takes_over_when_its_session_closes(cluster: Cluster) -> None:
    resource = unique("election")
    with lockio.Client(cluster.endpoints()) as client:
        a = client.session("candidate-a", timeout=10)
        b = client.session("candidate-b", timeout=10)
        try:
            ea, eb = a.election(resource, "10.0.0.1:8080"), b.election(resource, "10.0.0.2:8080")
            assert eb.leader() is None and not ea.leading
            lead_a = ea.campaign(timeout=5)
            assert ea.leading and ea.fence_token == lead_a.fence_token and lead_a.value == "10.0.0.1:8080"
            t, got = in_thread(lambda: eb.campaign())
            eventually(10, "b in the queue", lambda: client.lock_status(resource).queue_length == 1 or None)
            assert ea.leader() == eb.leader() == "10.0.0.1:8080" and not eb.leading
            # Nobody else leads while a does: a campaign with a timeout names the leader.
            with client.session("candidate-c", timeout=10) as c:
                with pytest.raises(lockio.LockHeld) as info:
                    c.election(resource, "c").campaign(timeout=1)
                assert info.value.holder_client_id == "candidate-a"
            a.close()  # the leader's session ends: b takes over
            t.join(15)
            lead_b = got[0]
            assert isinstance(lead_b, lockio.Lock), lead_b
            assert eb.leading and not ea.leading and lead_b.fence_token > lead_a.fence_token
            assert ea.leader() == "10.0.0.2:8080"
            eb.resign()
            assert not eb.leading and eb.leader() is None
            # run(): campaign, call as the leader, resign.
            assert eb.run(lambda: eb.leader()) == "10.0.0.2:8080"
            assert eb.leader() is None
        finally:
            a.close()
            b.close()


def test_fence_check(cluster: Cluster) -> None:
    resource = unique("fence")
    with lockio.Client(cluster.endpoints()) as client, client.session("fenced", timeout=10) as s:
        with s.lock(resource, value="writer-1") as lock:
            check = client.fence_check(resource, lock.fence_token)
            assert check.valid and check and check.resource == resource and check.fence_token == lock.fence_token
            assert [(h.session_id, h.value) for h in check.holders] == [(s.id, "writer-1")]
            stale = client.fence_check(resource, lock.fence_token + 1000)
            assert not stale.valid and not stale and len(stale.holders) == 1
        after = client.fence_check(resource, lock.fence_token)
        assert not after.valid and after.holders == []
        with pytest.raises(lockio.InvalidRequest) as info:
            client.fence_check(resource, 0)
        assert info.value.field == "fence_token"


class Collector:
    """Iterates a watch on a thread, keeping what it yields (and the error that ended it)."""

    def __init__(self, watch: lockio.Watch) -> None:
        self.watch = watch
        self.events: List[lockio.WatchEvent] = []
        self.error: Optional[BaseException] = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            for event in self.watch:
                self.events.append(event)
        except BaseException as e:
            self.error = e

    def wait_for(self, n: int, timeout: float = 15) -> List[lockio.WatchEvent]:
        return eventually(timeout, f"{n} events (have {len(self.events)}: {self.error})",
                          lambda: list(self.events) if len(self.events) >= n else None)

    def stop(self) -> None:
        # close() from another thread ends an iteration blocked there at once.
        started = time.monotonic()
        self.watch.close()
        self.thread.join(5)
        assert not self.thread.is_alive() and time.monotonic() - started < 1
        assert self.error is None, self.error


def lock_and_release(session: lockio.Session, resource: str) -> int:
    with session.lock(resource, wait=10) as lock:
        return lock.fence_token


def test_a_watch_filters_by_prefix_and_resumes_after_its_node_is_killed(fresh_cluster: Cluster) -> None:
    c = fresh_cluster
    prefix = unique("watched") + "/"
    leader = c.wait_for_leader()
    followers = [i for i in c.ids if i != leader]
    # The watch's client tries a follower first; the locks are taken through the others.
    watcher = lockio.Client(c.endpoints(followers + [leader]))
    writer = lockio.Client(c.endpoints([leader] + followers[1:]))
    with writer.session("watched-writer", timeout=10) as s:
        collector = Collector(watcher.watch(prefix))
        tokens = [lock_and_release(s, prefix + "a"), lock_and_release(s, "unwatched-" + prefix),
                  lock_and_release(s, prefix + "b")]
        first = collector.wait_for(4)
        assert [(e.type, e.resource, e.fence_token) for e in first] == [
            ("lock_acquired", prefix + "a", tokens[0]), ("lock_released", prefix + "a", tokens[0]),
            ("lock_acquired", prefix + "b", tokens[2]), ("lock_released", prefix + "b", tokens[2])]
        assert first[0].client_id == "watched-writer" and first[0].mode == "exclusive" and first[0].session_id == s.id
        assert collector.watch.endpoint == c.endpoints([followers[0]])[0]
        before_kill = collector.watch.position
        assert before_kill == first[-1].id

        c.kill(followers[0])
        more = [lock_and_release(s, prefix + "c"), lock_and_release(s, prefix + "d")]
        events = collector.wait_for(8)
        assert [(e.type, e.resource, e.fence_token) for e in events[4:]] == [
            ("lock_acquired", prefix + "c", more[0]), ("lock_released", prefix + "c", more[0]),
            ("lock_acquired", prefix + "d", more[1]), ("lock_released", prefix + "d", more[1])]
        ids = [e.id for e in events]
        assert ids == sorted(ids) and len(set(ids)) == len(ids), ids
        assert collector.watch.endpoint != c.endpoints([followers[0]])[0]

        # Restarted from its data directory, the node serves the same changes under the same ids.
        c.restart(followers[0])
        with lockio.Client(c.endpoints([followers[0]])) as only_restarted:
            again = Collector(only_restarted.watch(prefix, after=before_kill))
            assert [(e.id, e.type) for e in again.wait_for(4)] == [(e.id, e.type) for e in events[4:]]
            again.stop()
        collector.stop()
    watcher.close()
    writer.close()


@pytest.mark.serve_args("--event-history", "20")
def test_a_watch_that_needs_compacted_changes_raises_compacted_then_resumes(fresh_cluster: Cluster) -> None:
    c = fresh_cluster
    resource = unique("compacted")
    with lockio.Client(c.endpoints()) as client, client.session("churn", timeout=10) as s:
        first = lock_and_release(s, resource)
        for _ in range(12):
            lock_and_release(s, resource)
        watch = client.watch(resource, after="1.0")
        with pytest.raises(lockio.Compacted) as info:
            next(watch)
        e = info.value
        assert e.code == "COMPACTED" and e.requested == lockio.EventId(1, 0)
        assert e.requested < e.oldest <= e.current and watch.position == e.current
        # After re-reading the state, the same watch goes on from `current`.
        assert client.lock_status(resource).holder is None
        collector = Collector(watch)
        token = lock_and_release(s, resource)
        events = collector.wait_for(2)
        assert [(ev.type, ev.fence_token) for ev in events] == [("lock_acquired", token), ("lock_released", token)]
        assert events[0].id > e.current and token > first
        collector.stop()
