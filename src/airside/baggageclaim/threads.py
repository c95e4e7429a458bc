"""Thread plumbing between the event loop and the blocking stream code (tar pipes, sockets, the disk).

- `feed_thread`: an async request body fed, as an iterator of chunks, to blocking work in a thread;
- `own_thread`: a blocking call in a thread of its own (not the default executor's), awaited;
- `prefetch`: an iterator read ahead in a thread of its own (the network read overlaps the extraction).

Nothing here knows HTTP or volumes.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
from collections.abc import AsyncIterable, Callable, Iterator
from typing import Any, TypeVar

T = TypeVar("T")
DRAIN_AFTER_ERROR = 64 << 20  # bytes of an unwanted body read and dropped so the client sees the answer


async def feed_thread(body: AsyncIterable[bytes], work: Callable[[Iterator[bytes]], T]) -> T:
    """Runs work(chunks) in a thread (the default executor) while `body` is fed to it as chunks; returns
    what work returns, raises what it raises. Once work has ended (early, on an error), up to
    DRAIN_AFTER_ERROR more bytes of the body are read and dropped, so the client gets to read the answer."""
    q: queue.Queue[bytes | None] = queue.Queue(maxsize=64)
    finished = threading.Event()

    def chunks() -> Iterator[bytes]:
        while (item := q.get()) is not None:
            yield item

    def run() -> T:
        try:
            return work(chunks())
        finally:
            finished.set()

    def put_blocking(item: bytes | None) -> None:
        while not finished.is_set():
            try:
                q.put(item, timeout=0.2)
                return
            except queue.Full:
                continue

    fut = asyncio.get_running_loop().run_in_executor(None, run)
    dropped = 0
    async for chunk in body:
        if finished.is_set():
            dropped += len(chunk)
            if dropped > DRAIN_AFTER_ERROR:
                break
            continue
        if not chunk:
            continue
        try:
            q.put_nowait(chunk)
        except queue.Full:
            await asyncio.to_thread(put_blocking, chunk)
    if not finished.is_set():
        try:
            q.put_nowait(None)
        except queue.Full:
            await asyncio.to_thread(put_blocking, None)
    return await fut


async def own_thread(fn: Callable[[], T], name: str = "stream-out") -> T:
    """fn() in a thread of its own: a whole stream-out must not hold one of the default executor's few
    threads (stream-ins, and the other server of a pair streaming both ways, need them)."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future[T] = loop.create_future()

    def succeed(result: T) -> None:
        if not done.done():
            done.set_result(result)

    def fail(error: BaseException) -> None:
        if not done.done():
            done.set_exception(error)

    def run() -> None:
        try:
            result = fn()
        except BaseException as e:  # noqa: BLE001 - handed to the awaiting coroutine
            loop.call_soon_threadsafe(fail, e)
        else:
            loop.call_soon_threadsafe(succeed, result)

    threading.Thread(target=run, name=name, daemon=True).start()
    return await done


def prefetch(chunks: Iterator[T], depth: int = 16) -> Iterator[T]:
    """Iterates `chunks` in a thread of its own, `depth` chunks ahead (the network read overlaps the
    extraction); its errors are raised here. Stopping early stops the thread at its next chunk (and closes
    `chunks` if it has a close method)."""
    q: queue.Queue[tuple[str, Any]] = queue.Queue(maxsize=depth)  # ("chunk", T) | ("error", exc) | ("end", None)
    stop = threading.Event()

    def run() -> None:
        try:
            for chunk in chunks:
                while not stop.is_set():
                    try:
                        q.put(("chunk", chunk), timeout=0.2)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            q.put(("end", None))
        except BaseException as e:  # noqa: BLE001 - handed to the consumer
            q.put(("error", e))
        finally:
            close = getattr(chunks, "close", None)
            if close is not None:
                close()

    thread = threading.Thread(target=run, name="stream-prefetch", daemon=True)
    thread.start()
    try:
        while True:
            kind, item = q.get()
            if kind == "chunk":
                yield item
            elif kind == "error":
                raise item
            else:
                return
    finally:
        stop.set()
        with contextlib.suppress(queue.Empty):
            while True:
                q.get_nowait()
