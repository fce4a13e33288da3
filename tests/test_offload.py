"""The worker process that CPU-bound work (the solver, the charts) runs in, off the
event loop's interpreter (commands/offload.py)."""

from __future__ import annotations

import asyncio
import os
from concurrent.futures.process import BrokenProcessPool

import pytest

from commands import offload, solver


def _die() -> None:
    os._exit(3)  # the worker is killed (out of memory, kill -9)


def _infeasible() -> None:
    raise solver.Infeasible("30-minute papers: 3 seats for 5 students; add a paper")


async def test_work_runs_in_another_process_and_its_errors_come_back() -> None:
    assert await offload.run(os.getpid) != os.getpid()
    assert await offload.run(sum, [1, 2, 3]) == 6
    with pytest.raises(solver.Infeasible, match="3 seats for 5 students"):
        await offload.run(_infeasible)


def _niceness() -> int:
    return os.nice(0)


async def test_the_worker_yields_the_cpu_to_the_bot() -> None:
    """The solver's process runs at a lower priority than the bot's event loop."""
    assert await offload.run(_niceness) == min(19, os.nice(0) + offload.NICENESS)


async def test_prestart_starts_the_worker_before_the_first_call() -> None:
    """A bot starts the solver's process at start: the first `assign` finds it ready."""
    offload.shutdown()
    ready = offload.prestart()
    assert ready is not None
    assert await asyncio.wrap_future(ready) == 0  # the worker ran its no-op
    assert offload._pool is not None and len(offload._pool._processes) == 1
    pids = set(offload._pool._processes)
    assert await offload.run(os.getpid) in pids  # the same process serves the call


async def test_a_dead_worker_is_replaced() -> None:
    with pytest.raises(BrokenProcessPool):
        await offload.run(_die)  # dies on both tries: the caller is told
    first = await offload.run(os.getpid)
    assert first != os.getpid() and await offload.run(os.getpid) == first  # kept


async def test_thread_mode_runs_here(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(offload, "MODE", "thread")
    assert await offload.run(os.getpid) == os.getpid()
