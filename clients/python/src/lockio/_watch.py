"""Watches: following the cluster's changes (``GET /events``), the rules of the Rust client's ``Watch``.

Each change has an ``EventId``, its place in the replicated log, the same on every node; after
a broken connection the watch reconnects (the next endpoint first, then the others) and asks
for what follows the last id it delivered, so nothing is repeated or skipped. ``progress``
moves that position without delivering anything; ``compacted`` (the node no longer holds the
changes the watch needs) is raised as ``Compacted``, after which the watch resumes from its
``current``. The rules live in ``_WatchState``; ``Watch`` and ``AsyncWatch`` do the I/O with
httpx's blocking and asyncio clients.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import time
from collections import deque
from types import TracebackType
from typing import Any, AsyncIterator, Deque, Dict, Iterator, List, Optional, Tuple, Type, Union

import httpx

from ._errors import Compacted, Error, Unavailable, UnexpectedResponse, from_answer
from ._retry import Safety, backoff
from ._transport import AsyncTransport, Request, SyncTransport, _url
from ._types import BodyError, EventId, Fields, WatchEvent

log = logging.getLogger("lockio")

#: A stream that sends nothing (not even its keep-alive comments, every 15 s) for this long is
#: taken for dead and reconnected.
SILENCE = 35.0


class SseParser:
    """Server-sent events, line by line: the JSON ``data`` of each complete event (comments and non-JSON left out)."""

    def __init__(self) -> None:
        self._data: List[str] = []

    def line(self, line: str) -> Optional[Any]:
        """Takes one line (without its end); returns the event's JSON when the line ends an event."""
        line = line.rstrip("\r\n")
        if line == "":
            data, self._data = self._data, []
            if not data:
                return None
            try:
                return json.loads("\n".join(data))
            except ValueError:
                return None
        if line.startswith("data:"):
            value = line[5:]
            self._data.append(value[1:] if value.startswith(" ") else value)
        return None  # comments (":"), "id:", "event:", "retry:" and anything else

    def reset(self) -> None:
        """Drops a half-read event (its connection ended)."""
        self._data = []


def _shut_down(response: httpx.Response) -> None:
    """Shuts the stream's socket down, which wakes a read blocked on it in another thread (best effort)."""
    try:
        stream = response.extensions.get("network_stream")
        sock = stream.get_extra_info("socket") if stream is not None else None
        if isinstance(sock, socket.socket):
            sock.shutdown(socket.SHUT_RDWR)
    except Exception as e:
        log.debug("shutting an event stream down: %s", e)


class _WatchState:
    """What a watch knows, and what an event of the stream does to it; no I/O."""

    def __init__(self, transport: Union[SyncTransport, AsyncTransport], prefix: Optional[str],
                 after: Optional[EventId]) -> None:
        self._transport = transport
        self.prefix = prefix
        self._position = after
        self._ready: Deque[Union[WatchEvent, Error]] = deque()
        self._parser = SseParser()
        #: The endpoint the stream is open on (an index), and the one to try first on the next connect.
        self._on: Optional[int] = None
        self._next_first: Optional[int] = None
        self._closed = False

    @property
    def position(self) -> Optional[EventId]:
        """Everything up to this id was delivered (or did not match): where the next connection resumes.

        None before anything was read from a watch started without ``after``.
        """
        return self._position

    @property
    def endpoint(self) -> Optional[str]:
        """The endpoint (``host:port``) the stream is open on now, if it is."""
        return None if self._on is None else self._transport.endpoints.list[self._on].authority

    @property
    def closed(self) -> bool:
        """Whether ``close()`` ran."""
        return self._closed

    def _request(self) -> Request:
        query: Dict[str, str] = {}
        if self.prefix is not None:
            query["resource"] = self.prefix
        if self._position is not None:
            query["after"] = str(self._position)
        return Request("GET", ["events"], Safety.REPEATABLE, query=query)

    def _order(self) -> List[int]:
        order = self._transport.endpoints.round()
        if self._next_first is not None:
            first, self._next_first = self._next_first, None
            order = [first] + [i for i in order if i != first]
        return order

    def _timeout(self) -> httpx.Timeout:
        s = self._transport.settings
        return httpx.Timeout(s.request_timeout, connect=s.connect_timeout, read=SILENCE)

    def _ended(self) -> None:
        """The stream ended, broke or fell silent: try another endpoint first (ids are the same on every node)."""
        if self._on is not None:
            log.debug("event stream from %s ended", self.endpoint)
            self._next_first = (self._on + 1) % len(self._transport.endpoints.list)
        self._on = None
        self._parser.reset()

    def _take(self, data: Any) -> bool:
        """Handles one event of the stream; false when the stream must be closed (after ``compacted``)."""
        if not isinstance(data, dict):
            return True
        kind = data.get("type")
        try:
            if kind == "compacted":
                f = Fields(data)
                ids = [EventId.parse(f.text(k)) for k in ("requested", "oldest", "current")]
                self._position = ids[2]
                self._ready.append(Compacted(ids[0], ids[1], ids[2], body=data))
                return False
            if kind == "progress":
                current = EventId.parse(Fields(data).text("current"))
                if self._position is None or current > self._position:
                    self._position = current
                return True
            raw_id = data.get("id")
            if raw_id is None:
                return True  # a node event (leader changes, reachability): this node's view, not a change
            event_id = EventId.parse(raw_id)
            if self._position is not None and event_id <= self._position:
                return True
            event = WatchEvent.read(event_id, Fields(data))
        except (BodyError, Error) as e:
            self._ready.append(UnexpectedResponse(self.endpoint or "?", f"event {data!r}: {e}"))
            return True
        self._position = event_id
        self._ready.append(event)
        return True

    def _pop(self) -> Optional[WatchEvent]:
        if not self._ready:
            return None
        item = self._ready.popleft()
        if isinstance(item, Error):
            raise item
        return item

    def _refused(self, index: int, response: httpx.Response, body: bytes) -> Tuple[str, str]:
        """A non-200 answer to a connect: a 503 is a failure to try elsewhere (returned), anything else raises."""
        authority = self._transport.endpoints.list[index].authority
        try:
            parsed = json.loads(body)
        except ValueError:
            parsed = None
        if response.status_code == 503:
            self._transport.endpoints.failed(index)
            return authority, "503"
        raise from_answer(authority, response.status_code, parsed)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(prefix={self.prefix!r}, position={self._position}, endpoint={self.endpoint!r})"


class Watch(_WatchState):
    """An iterator of the cluster's changes (``client.watch(prefix)``), resuming across reconnects.

    ``for event in watch:`` yields ``WatchEvent`` values in log order and blocks for the next
    one. A broken or silent stream is reopened (the next endpoint first, then the others, for
    at most the client's ``retry_budget``, then ``Unavailable``) after ``position``, so nothing
    is repeated or skipped. ``Compacted`` means changes were missed: re-read the state you care
    about and iterate again; the watch goes on from ``current``. Node events (leader changes)
    are not changes and are not delivered. Not for use from several threads at once; ``close()``
    (or leaving a ``with`` block) ends it.
    """

    def __init__(self, transport: SyncTransport, prefix: Optional[str], after: Optional[EventId]) -> None:
        super().__init__(transport, prefix, after)
        self._sync = transport
        self._response: Optional[httpx.Response] = None
        self._lines: Optional[Iterator[str]] = None

    def __iter__(self) -> Watch:
        return self

    def __next__(self) -> WatchEvent:
        while True:
            event = self._pop()
            if event is not None:
                return event
            if self._closed:
                self._drop(ended=False)  # a stream opened while close() ran on another thread
                raise StopIteration
            if self._lines is None:
                self._connect()
                continue
            try:
                line = next(self._lines)
            except (StopIteration, httpx.HTTPError, httpx.StreamError, OSError) as e:
                log.debug("event stream broke: %s", e or "ended")
                self._drop()
                continue
            data = self._parser.line(line)
            if data is not None and not self._take(data):
                self._drop(ended=False)

    def _connect(self) -> None:
        deadline = time.monotonic() + self._sync.settings.retry_budget
        tried: List[Tuple[str, str]] = []
        round_ = 0
        while True:
            for index in self._order():
                endpoint = self._sync.endpoints.list[index]
                request = self._request()
                try:
                    response = self._sync.http.send(
                        self._sync.http.build_request("GET", _url(endpoint, request), params=request.query,
                                                      timeout=self._timeout()), stream=True)
                except (httpx.HTTPError, OSError) as e:
                    self._sync.endpoints.failed(index)
                    tried = [t for t in tried if t[0] != endpoint.authority] + [(endpoint.authority, str(e) or type(e).__name__)]
                    continue
                if response.status_code == 200:
                    self._response, self._lines, self._on = response, response.iter_lines(), index
                    return
                try:
                    body = response.read()
                finally:
                    response.close()
                failure = self._refused(index, response, body)
                tried = [t for t in tried if t[0] != failure[0]] + [failure]
            pause = backoff(round_, None)
            round_ += 1
            if time.monotonic() + pause >= deadline:
                raise Unavailable(tried, False)
            time.sleep(pause)

    def _drop(self, ended: bool = True) -> None:
        response, self._response, self._lines = self._response, None, None
        if response is not None:
            try:
                response.close()
            except Exception as e:  # closed under a read on another thread
                log.debug("closing an event stream: %s", e)
        if ended:
            self._ended()
        else:
            self._on = None
            self._parser.reset()

    def close(self) -> None:
        """Closes the stream; iterating afterwards stops at once.

        May be called from another thread: an iteration blocked there waiting for the next
        event then stops (``StopIteration``) at once.
        """
        self._closed = True
        response = self._response
        if response is not None:
            _shut_down(response)
        self._drop(ended=False)

    def __enter__(self) -> Watch:
        return self

    def __exit__(self, et: Optional[Type[BaseException]], e: Optional[BaseException],
                 tb: Optional[TracebackType]) -> None:
        self.close()


class AsyncWatch(_WatchState):
    """The asyncio twin of ``Watch``: ``async for event in client.watch(prefix):``, the same rules."""

    def __init__(self, transport: AsyncTransport, prefix: Optional[str], after: Optional[EventId]) -> None:
        super().__init__(transport, prefix, after)
        self._async = transport
        self._response: Optional[httpx.Response] = None
        self._lines: Optional[AsyncIterator[str]] = None

    def __aiter__(self) -> AsyncWatch:
        return self

    async def __anext__(self) -> WatchEvent:
        while True:
            event = self._pop()
            if event is not None:
                return event
            if self._closed:
                raise StopAsyncIteration
            if self._lines is None:
                await self._connect()
                continue
            try:
                # httpx's read timeout bounds each read; this bounds the whole step too.
                line = await asyncio.wait_for(self._lines.__anext__(), SILENCE + 5)
            except (StopAsyncIteration, httpx.HTTPError, httpx.StreamError, OSError, asyncio.TimeoutError) as e:
                log.debug("event stream broke: %s", e or "ended")
                await self._drop()
                continue
            data = self._parser.line(line)
            if data is not None and not self._take(data):
                await self._drop(ended=False)

    async def _connect(self) -> None:
        deadline = time.monotonic() + self._async.settings.retry_budget
        tried: List[Tuple[str, str]] = []
        round_ = 0
        while True:
            for index in self._order():
                endpoint = self._async.endpoints.list[index]
                request = self._request()
                try:
                    response = await asyncio.wait_for(self._async.http.send(
                        self._async.http.build_request("GET", _url(endpoint, request), params=request.query,
                                                       timeout=self._timeout()), stream=True),
                        self._async.settings.request_timeout)
                except (httpx.HTTPError, OSError, asyncio.TimeoutError) as e:
                    self._async.endpoints.failed(index)
                    tried = [t for t in tried if t[0] != endpoint.authority] + [(endpoint.authority, str(e) or type(e).__name__)]
                    continue
                if response.status_code == 200:
                    self._response, self._lines, self._on = response, response.aiter_lines(), index
                    return
                try:
                    body = await response.aread()
                finally:
                    await response.aclose()
                failure = self._refused(index, response, body)
                tried = [t for t in tried if t[0] != failure[0]] + [failure]
            pause = backoff(round_, None)
            round_ += 1
            if time.monotonic() + pause >= deadline:
                raise Unavailable(tried, False)
            await asyncio.sleep(pause)

    async def _drop(self, ended: bool = True) -> None:
        if self._response is not None:
            await self._response.aclose()
        self._response, self._lines = None, None
        if ended:
            self._ended()
        else:
            self._on = None
            self._parser.reset()

    async def close(self) -> None:
        """Closes the stream; iterating afterwards stops at once."""
        self._closed = True
        await self._drop(ended=False)

    async def __aenter__(self) -> AsyncWatch:
        return self

    async def __aexit__(self, et: Optional[Type[BaseException]], e: Optional[BaseException],
                        tb: Optional[TracebackType]) -> None:
        await self.close()
