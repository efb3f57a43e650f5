"""Async UDFs for tests/test_async.py: standard library only, so every backend loads them by reference."""

from __future__ import annotations

import asyncio
import os
import random
import sys

from async_http import HttpError, http_get


async def double_later(x: int) -> int:
    """Return 2x after a random short wait, so calls finish out of row order."""
    await asyncio.sleep(random.uniform(0, 0.003))
    return 2 * x


def double(x: int) -> int:
    return 2 * x


async def double_or_none(x: int) -> int | None:
    await asyncio.sleep(0)
    return double_or_none_sync(x)


def double_or_none_sync(x: int | None) -> int | None:
    if x is None:
        return -1
    return None if x % 5 == 0 else 2 * x


async def doubles_later(xs):
    await asyncio.sleep(0.001)
    return [2 * x for x in xs]


def doubles(xs):
    return [2 * x for x in xs]


async def fails_on_7(x: int) -> int:
    await asyncio.sleep(0)
    if x == 7:
        raise ValueError(f"no sevens ({x})")
    return x


def fails_on_7_sync(x: int) -> int:
    if x == 7:
        raise ValueError(f"no sevens ({x})")
    return x


class FlakyError(Exception):
    """Raised by ``flaky`` the first time it sees a value (in this worker)."""


_seen: set[int] = set()


async def flaky(x: int) -> int:
    await asyncio.sleep(0)
    if x not in _seen:
        _seen.add(x)
        raise FlakyError(f"first call for {x}")
    return x


async def fetch_or_http_error(url: str) -> str:
    return await http_get(url)


def worker_state(x: int) -> str:
    """Report this worker's event loop (a plain UDF, run beside the async ones): tasks left, running, closed."""
    module = sys.modules.get("duckdb_subinterp._worker.asynchronous")
    loop = module.event_loop() if module is not None else None
    if loop is None:
        return "no loop"
    left = [task for task in asyncio.all_tasks(loop) if not task.done()]
    return f"tasks={len(left)} running={loop.is_running()} closed={loop.is_closed()}"


class AsyncCallable:
    """An instance (not a class) whose ``__call__`` is async: shipped by value."""

    def __init__(self, offset: int) -> None:
        self.offset = offset

    async def __call__(self, x: int) -> int:
        await asyncio.sleep(0)
        return x + self.offset


async def pid_of_worker(x: int) -> int:
    await asyncio.sleep(0)
    return os.getpid()


__all__ = ["HttpError"]


_calls: dict[int, int] = {}


async def mixed(x: int) -> int:
    """Fails for 3, fails once for 5, times out for 7 (under a short timeout), returns x otherwise."""
    _calls[x] = _calls.get(x, 0) + 1
    await asyncio.sleep(0.001)
    if x == 3:
        raise ValueError("no threes")
    if x == 5 and _calls[x] == 1:
        raise ConnectionError("flaky")
    if x == 7:
        await asyncio.sleep(10)
    return x


async def mixed_batch(xs):
    await asyncio.sleep(0.001)
    if 3 in xs:
        raise ValueError("no threes")
    return list(xs)
