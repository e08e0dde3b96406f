"""Real ``lockio serve`` clusters for the tests: 3 processes on 127.0.0.1 with free ports and temp data dirs.

Like crates/lockio/tests/it/support/cluster.rs: the binary is ``$LOCKIO_BIN``, else the newer of
target/debug/lockio and target/release/lockio (built by ``cargo build``).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Callable, Dict, Iterator, List, Optional, Sequence, Set, TypeVar

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[3]
T = TypeVar("T")
_used_ports: Set[int] = set()


def lockio_bin() -> str:
    env = os.environ.get("LOCKIO_BIN")
    if env:
        return env
    found = [p for p in (ROOT / "target/debug/lockio", ROOT / "target/release/lockio") if p.exists()]
    if not found:
        pytest.exit("no lockio binary: run `cargo build` first (or set LOCKIO_BIN)", returncode=2)
    return str(max(found, key=lambda p: p.stat().st_mtime))


def free_port() -> int:
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        if port not in _used_ports:
            _used_ports.add(port)
            return port


def eventually(timeout: float, what: str, probe: Callable[[], Optional[T]], every: float = 0.05) -> T:
    """Polls ``probe`` until it returns something other than None, or fails after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = probe()
        except Exception:
            value = None
        if value is not None:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(every)


def get_json(url: str, timeout: float = 1.0) -> Optional[Dict[str, object]]:
    try:
        r = httpx.get(url, timeout=timeout, trust_env=False)
        body = r.json()
        return body if isinstance(body, dict) else None
    except (httpx.HTTPError, ValueError):
        return None


class Cluster:
    """N real nodes; tests can SIGKILL, SIGSTOP and SIGCONT them."""

    def __init__(self, n: int = 3, args: Sequence[str] = ()) -> None:
        """``args`` are extra ``lockio serve`` flags for every node, e.g. ``["--event-history", "20"]``."""
        self.dir = tempfile.TemporaryDirectory(prefix="lockio-py-")
        self.ids = list(range(1, n + 1))
        self.http = {i: free_port() for i in self.ids}
        self.raft = {i: free_port() for i in self.ids}
        self.args = list(args)
        self.procs: Dict[int, subprocess.Popen[bytes]] = {}
        self.stopped: Set[int] = set()
        for i in self.ids:
            self._spawn(i)

    def _spawn(self, i: int) -> None:
        peers = ",".join(f"{j}=127.0.0.1:{self.raft[j]}" for j in self.ids)
        log = open(Path(self.dir.name) / f"node{i}.log", "ab")
        self.procs[i] = subprocess.Popen(
            [lockio_bin(), "serve", "--id", str(i), "--http", f"127.0.0.1:{self.http[i]}",
             "--raft", f"127.0.0.1:{self.raft[i]}", "--peers", peers,
             "--data-dir", str(Path(self.dir.name) / f"node{i}"), *self.args],
            stdin=subprocess.DEVNULL, stdout=log, stderr=log, env={**os.environ, "RUST_LOG": "info,openraft=warn"})
        log.close()

    def restart(self, i: int) -> None:
        """Starts a killed node again from its data directory, on the same ports; returns once it serves HTTP."""
        assert i not in self.procs, f"node {i} is running"
        self._spawn(i)
        eventually(20, f"node {i} serves HTTP again", lambda: get_json(self.url(i, "/health")))

    def start(self) -> Cluster:
        for i in self.ids:
            eventually(20, f"node {i} serves HTTP", lambda i=i: get_json(self.url(i, "/health")))  # type: ignore[misc]
        self.wait_for_leader()
        return self

    def url(self, i: int, path: str = "") -> str:
        return f"http://127.0.0.1:{self.http[i]}{path}"

    def endpoints(self, ids: Optional[List[int]] = None) -> List[str]:
        return [f"127.0.0.1:{self.http[i]}" for i in (ids or self.ids)]

    def running(self) -> List[int]:
        return [i for i in self.ids if i in self.procs]

    def wait_for_leader(self, timeout: float = 30) -> int:
        """Until one running node is the healthy leader and every running node names it; its id."""
        def probe() -> Optional[int]:
            leader, named = None, set()
            for i in self.running():
                h = get_json(self.url(i, "/health"))
                if h is None:
                    return None
                if h.get("is_leader") is True and h.get("status") == "healthy":
                    leader = i
                named.add(h.get("leader_id"))
            return leader if leader is not None and named == {leader} else None
        return eventually(timeout, "a leader all running nodes agree on", probe)

    def kill(self, i: int) -> None:
        proc = self.procs.pop(i)
        proc.send_signal(signal.SIGKILL)
        proc.wait()

    def pause(self, i: int) -> None:
        self.procs[i].send_signal(signal.SIGSTOP)
        self.stopped.add(i)

    def resume(self, i: int) -> None:
        if i in self.stopped and i in self.procs:
            self.procs[i].send_signal(signal.SIGCONT)
        self.stopped.discard(i)

    def resume_all(self) -> None:
        for i in list(self.stopped):
            self.resume(i)

    def logs(self) -> str:
        out = []
        for i in self.ids:
            text = (Path(self.dir.name) / f"node{i}.log").read_text(errors="replace").splitlines()
            out.append(f"--- node {i} (last 20 lines)\n" + "\n".join(text[-20:]))
        return "\n".join(out)

    def stop(self) -> None:
        self.resume_all()
        for i in list(self.procs):
            self.kill(i)
        self.dir.cleanup()


def _start(args: Sequence[str] = ()) -> Cluster:
    for _ in range(3):
        cluster = Cluster(args=args)
        try:
            return cluster.start()
        except AssertionError:
            # A port taken between probing and binding: try other ones.
            print(cluster.logs())
            cluster.stop()
    raise AssertionError("could not start a cluster")


@pytest.fixture(scope="session")
def cluster() -> Iterator[Cluster]:
    """One cluster shared by the tests that do not harm it."""
    c = _start()
    yield c
    c.stop()


@pytest.fixture
def fresh_cluster(request: pytest.FixtureRequest) -> Iterator[Cluster]:
    """A cluster of its own, for a test that kills or pauses nodes; SIGCONTs whatever it paused.

    Extra ``lockio serve`` flags come from ``@pytest.mark.serve_args("--event-history", "20")``.
    """
    marker = request.node.get_closest_marker("serve_args")
    c = _start(marker.args if marker is not None else ())
    try:
        yield c
    finally:
        rep = getattr(request.node, "rep_call", None)
        if rep is not None and rep.failed:
            print(c.logs())
        c.stop()


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "serve_args(*flags): extra `lockio serve` flags for the fresh_cluster fixture")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    rep = outcome.get_result()  # type: ignore[attr-defined]
    setattr(item, "rep_" + rep.when, rep)
