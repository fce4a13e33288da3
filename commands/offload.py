"""CPU-bound work (the assignment solver, breakout groups, charts) in a separate process.

A thread is not enough: pure-Python work in a thread holds the GIL in turns with the
event loop, so every other command waits a few milliseconds at each step for as long
as the solver runs (measured: paced p99 of 200 users rose from 38 ms to 232 ms while
`assign` on 300 students ran every 2 s). A worker process has its own interpreter.

One worker, started with the bot (:func:`prestart`) or else on first use (``spawn``:
nothing of the bot's event loop, threads or connections is copied into it) and kept for
the next call. If it dies (killed, out of memory), a new one is started and the call
tried once more. It runs at a lower CPU priority (``nice`` +:data:`NICENESS`): on a
small host, the bot's event loop and the database answer the class first, and the
solver takes the time they leave. ``MODE = "thread"`` runs the work in a thread
instead: where processes cannot be started, and in tests that replace the solver with
a local function (which cannot be sent to another process).
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import threading
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from functools import partial
from typing import Literal, TypeVar

log = logging.getLogger("coursebot.offload")

T = TypeVar("T")

#: ``"process"`` (the default) or ``"thread"``.
MODE: Literal["process", "thread"] = "process"

#: How much lower the worker's CPU priority is than the bot's (POSIX ``nice``).
NICENESS = 10

_pool: ProcessPoolExecutor | None = None
_pool_lock = threading.Lock()


def _yield_cpu() -> None:
    """In the worker, at start: let interactive work go first."""
    if hasattr(os, "nice"):
        try:
            os.nice(NICENESS)
        except OSError:  # not allowed here: run at the bot's priority
            log.info("could not lower the solver process's priority")


def _executor() -> ProcessPoolExecutor:
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ProcessPoolExecutor(
                max_workers=1,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=_yield_cpu,
            )
        return _pool


def prestart() -> Future[int] | None:
    """Start the worker now (a bot at start), not at the first `assign`: a new process
    imports the bot's modules (about a second of CPU), which would otherwise compete
    with the class's commands the moment the instructor first asks for a proposal.
    Returns a future done once the worker is ready (None: thread mode, or no process
    could be started; the first call tries again)."""
    if MODE != "process":
        return None
    try:
        return _executor().submit(int)  # a no-op: done when the worker has started
    except (OSError, RuntimeError) as exc:  # processes cannot be started here
        log.warning("could not start the solver's worker process yet: %s", exc)
        return None


def _discard(broken: ProcessPoolExecutor) -> None:
    global _pool
    with _pool_lock:
        if _pool is broken:
            _pool = None
    broken.shutdown(wait=False, cancel_futures=True)


async def run(fn: Callable[..., T], *args: object) -> T:
    """``fn(*args)`` in the worker process (``fn`` and the arguments are pickled: a
    module-level function and plain data). Exceptions raised by ``fn`` are raised here."""
    if MODE == "thread":
        return await asyncio.to_thread(fn, *args)
    for attempt in (1, 2):
        pool = _executor()
        try:
            return await asyncio.get_running_loop().run_in_executor(pool, partial(fn, *args))
        except BrokenProcessPool:
            log.warning("the worker process died (attempt %d); starting a new one", attempt)
            _discard(pool)
            if attempt == 2:
                raise
    raise AssertionError("unreachable")


def shutdown() -> None:
    """Stop the worker process (at exit; the next call starts a new one)."""
    global _pool
    with _pool_lock:
        pool, _pool = _pool, None
    if pool is not None:
        pool.shutdown(wait=True, cancel_futures=True)
