"""The asyncio API against real clusters: the same behaviour as the blocking one."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import List, Tuple

import pytest
from conftest import Cluster

import lockio


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def test_async_lock_in_turn_queue_and_errors(cluster: Cluster) -> None:
    async def main() -> None:
        resource = unique("async-turns")
        entries: List[Tuple[str, int]] = []
        inside = asyncio.Lock()
        async with lockio.AsyncClient(cluster.endpoints()) as client:

            async def worker(name: str) -> None:
                async with client.session(name, timeout=10) as session:
                    for _ in range(3):
                        async with session.lock(resource, wait=20) as lock:
                            assert not inside.locked()
                            async with inside:
                                entries.append((name, lock.fence_token))
                                await asyncio.sleep(0.05)

            await asyncio.gather(worker("a1"), worker("a2"))
            tokens = [t for _, t in entries]
            assert len(tokens) == 6 and tokens == sorted(tokens) and len(set(tokens)) == 6

            # A held lock raises before the block; a waiter queues and gets the next token.
            async with client.session("holder", timeout=10) as a, client.session("waiter", timeout=10) as b:
                held = await a.lock(resource)
                entered = False
                with pytest.raises(lockio.LockHeld) as info:
                    async with b.lock(resource):
                        entered = True
                assert not entered and info.value.holder_client_id == "holder"
                waiting = asyncio.ensure_future(b.lock(resource, wait=20).acquire())
                for _ in range(100):
                    if (await client.lock_status(resource)).queue_length == 1:
                        break
                    await asyncio.sleep(0.05)
                await held.release()
                got = await asyncio.wait_for(waiting, 20)
                assert got.fence_token > held.fence_token and got.waited > 0
                await got.release()
                # Cancelling a wait gives the place up.
                blocker = await a.lock(resource)
                cancelled = asyncio.ensure_future(b.lock(resource, wait=30).acquire())
                await asyncio.sleep(0.5)
                cancelled.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await cancelled
                deadline = time.monotonic() + 10
                while (await client.lock_status(resource)).queue_length != 0:
                    assert time.monotonic() < deadline, "the cancelled waiter left the queue"
                    await asyncio.sleep(0.1)
                await blocker.release()
            stats = await client.stats()
            assert stats.fence_counter >= 8
            assert (await client.status()).leader is not None

    asyncio.run(main())


def test_async_failover_and_leader_kill(fresh_cluster: Cluster) -> None:
    c = fresh_cluster

    async def main() -> None:
        async with lockio.AsyncClient(c.endpoints()) as client, client.session("async-steady", timeout=5) as s:
            lock = await s.lock("async-steady")
            leader = c.wait_for_leader()
            c.kill(leader)
            end = time.monotonic() + 7
            while time.monotonic() < end:
                assert s.state is not lockio.SessionState.EXPIRED and not s.lost.is_set()
                await asyncio.sleep(0.1)
            # With the old leader's endpoint dead, calls fail over to the others.
            holder = (await client.lock_status("async-steady")).holder
            assert holder is not None and holder.session_id == s.id
            async with client.session("async-new", timeout=10) as other:
                with pytest.raises(lockio.LockHeld):
                    await other.lock("async-steady")
            await lock.release()
            deadline = time.monotonic() + 5
            while s.state is not lockio.SessionState.ALIVE:
                assert time.monotonic() < deadline
                await asyncio.sleep(0.05)

    asyncio.run(main())


def test_async_blocked_keepalives_jeopardy_then_expired(fresh_cluster: Cluster) -> None:
    c = fresh_cluster
    lost_calls: List[lockio.Expiry] = []

    async def main() -> None:
        client = lockio.AsyncClient(c.endpoints(), request_timeout=2)
        s = await client.session("async-paused", timeout=5, on_lost=lost_calls.append)
        seen: List[lockio.SessionState] = []
        try:
            with pytest.raises(lockio.SessionExpired):
                async with s.lock("async-paused") as lock:
                    for i in c.ids:
                        c.pause(i)
                    waiter = asyncio.ensure_future(lock.lost.wait())
                    deadline = time.monotonic() + 10
                    while not waiter.done():
                        state = s.state
                        if not seen or seen[-1] is not state:
                            seen.append(state)
                        assert time.monotonic() < deadline, seen
                        await asyncio.sleep(0.05)
                    assert await s.wait_lost() is lockio.Expiry.TIMED_OUT
            if seen[-1] is not lockio.SessionState.EXPIRED:
                seen.append(s.state)
            assert seen == [lockio.SessionState.ALIVE, lockio.SessionState.IN_JEOPARDY, lockio.SessionState.EXPIRED]
            assert lost_calls == [lockio.Expiry.TIMED_OUT]
        finally:
            c.resume_all()
        await s.close()
        await client.close()

    asyncio.run(main())


def test_async_shared_locks_semaphores_elections_and_fence_checks(cluster: Cluster) -> None:
    async def main() -> None:
        resource, sem, office = unique("async-shared"), unique("async-sem"), unique("async-election")
        async with lockio.AsyncClient(cluster.endpoints()) as client, client.session("ar1", timeout=10) as r1, \
                client.session("ar2", timeout=10) as r2, client.session("aw", timeout=10) as w:
            # Readers share, each with its own token; a writer waits for both.
            async with r1.lock(resource, mode="shared", value="one") as a, r2.lock(resource, mode="shared") as b:
                assert (a.mode, a.value, b.mode) == ("shared", "one", "shared") and a.fence_token != b.fence_token
                status = await client.lock_status(resource)
                assert status.mode == "shared" and [h.value for h in status.holders] == ["one", None]
                with pytest.raises(lockio.LockHeld) as info:
                    await w.lock(resource)
                assert info.value.holders_count == 2
                writer = asyncio.ensure_future(w.lock(resource, wait=20).acquire())
                for _ in range(100):
                    if (await client.lock_status(resource)).queue_length == 1:
                        break
                    await asyncio.sleep(0.05)
                await a.release()
                await asyncio.sleep(0.3)
                assert not writer.done()
            got = await asyncio.wait_for(writer, 15)
            assert got.mode == "exclusive" and got.fence_token > max(a.fence_token, b.fence_token)
            check = await client.fence_check(resource, got.fence_token)
            assert check.valid and [h.session_id for h in check.holders] == [w.id]
            await got.release()
            assert not (await client.fence_check(resource, got.fence_token)).valid

            # A semaphore of 2 admits two.
            p1, p2 = await r1.semaphore(sem, 2), await r2.semaphore(sem, 2)
            with pytest.raises(lockio.LockHeld):
                await w.semaphore(sem, 2)
            with pytest.raises(lockio.LimitMismatch):
                await w.semaphore(sem, 5)
            await p1.release()
            async with w.semaphore(sem, 2) as p3:
                assert p3.limit == 2 and (await client.lock_status(sem)).holders_count == 2
            await p2.release()

            # An election: r1 leads, r2 takes over when r1 resigns.
            e1, e2 = r1.election(office, "host-1"), r2.election(office, "host-2")
            lead = await e1.campaign(timeout=5)
            assert e1.leading and await e2.leader() == "host-1"
            campaign = asyncio.ensure_future(e2.campaign())
            await asyncio.sleep(0.3)
            assert not campaign.done()
            await e1.resign()
            second = await asyncio.wait_for(campaign, 15)
            assert e2.leading and not e1.leading and second.fence_token > lead.fence_token
            assert await e1.leader() == "host-2"
            assert await e2.run(asyncio.sleep, 0, "ran") == "ran"

    asyncio.run(main())


def test_async_watch_filters_and_resumes_after_its_node_is_killed(fresh_cluster: Cluster) -> None:
    c = fresh_cluster
    prefix = unique("async-watched") + "/"
    leader = c.wait_for_leader()
    followers = [i for i in c.ids if i != leader]

    async def main() -> None:
        async with lockio.AsyncClient(c.endpoints(followers + [leader])) as watcher, \
                lockio.AsyncClient(c.endpoints([leader])) as writer, writer.session("aw", timeout=10) as s:
            async def turn(resource: str) -> int:
                async with s.lock(resource, wait=10) as lock:
                    return lock.fence_token

            async with watcher.watch(prefix) as watch:
                async def take(n: int) -> List[lockio.WatchEvent]:
                    return [await asyncio.wait_for(watch.__anext__(), 15) for _ in range(n)]

                t1 = await turn(prefix + "a")
                await turn("elsewhere-" + prefix)
                first = await take(2)
                assert [(e.type, e.resource, e.fence_token) for e in first] == [
                    ("lock_acquired", prefix + "a", t1), ("lock_released", prefix + "a", t1)]
                assert watch.endpoint == c.endpoints([followers[0]])[0] and watch.position == first[-1].id
                c.kill(followers[0])
                t2 = await turn(prefix + "b")
                after = await take(2)
                assert [(e.type, e.fence_token) for e in after] == [("lock_acquired", t2), ("lock_released", t2)]
                assert first[-1].id < after[0].id < after[1].id
                assert watch.endpoint != c.endpoints([followers[0]])[0]
            # A watch from a given point replays exactly what followed it.
            async with watcher.watch(prefix, after=first[0].id) as again:
                replay = [await asyncio.wait_for(again.__anext__(), 15) for _ in range(3)]
                assert [e.id for e in replay] == [first[1].id, after[0].id, after[1].id]

    asyncio.run(main())
