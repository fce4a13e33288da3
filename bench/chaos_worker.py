"""A GPU worker process of the chaos benchmark: the real :class:`gpu_queue.worker.Worker`
(claims, heartbeats, its warm child, the result rows, the backend's own wake-up) on the
bot instance's shared virtual clock (:mod:`bench.chaos_clock`), serving
until SIGTERM or ``kill -9``. It prints ``run <job>`` when it starts a job and ``end <job>``
when it wrote the outcome, so the benchmark can kill it in the middle of one.

Usage: python -m bench.chaos_worker DATABASE_URL DATA_DIR STATE_FILE
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
from pathlib import Path
from typing import Any

from bench.chaos_clock import START, ChaosState, SharedClock, install_demo
from db.session import Database
from gpu_queue.worker import Worker

# At import, so that the worker's spawned child (which imports this module again) has
# the benchmark's demo too.
install_demo()


class LoudWorker(Worker):
    """Says when a job starts and when its outcome is written."""

    async def execute(self, job_id: int, demo_name: str, params: dict[str, Any]) -> None:
        print(f"run {job_id}", flush=True)
        await super().execute(job_id, demo_name, params)
        print(f"end {job_id}", flush=True)


async def serve(url: str, data_dir: str, state_file: str) -> None:
    db = Database(url)
    clock = SharedClock(ChaosState(Path(state_file), START), follow=True)
    worker = LoudWorker(db, Path(data_dir), name=f"chaos-worker:{os.getpid()}", clock=clock)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, worker.stop.set)
    print("ready", flush=True)
    try:
        await worker.serve(poll_s=0.2)
    finally:
        await db.dispose()


if __name__ == "__main__":
    logging.basicConfig(level=logging.ERROR)
    asyncio.run(serve(*sys.argv[1:4]))
