"""The GPU workers' own rows (``gpu_workers``): who is serving, idle or busy, where.

Every worker process registers when it starts, beats while it lives (idle or running a
job), and says ``stopped`` when it leaves (a worker killed with ``kill -9`` simply stops
beating: after :data:`gpu_queue.jobs.STALE` it no longer counts). The bot reads the rows
for its estimates (an idle worker: "starting now"), ``gpu status`` and ``coursebot slurm
status`` (which Slurm job holds which worker, and until when).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from db.models import GpuWorker
from gpu_queue.jobs import STALE

IDLE, BUSY, STOPPING, STOPPED = "idle", "busy", "stopping", "stopped"


@dataclass(frozen=True)
class Identity:
    """Where a worker runs (what it registers)."""

    name: str
    host: str = ""
    pid: int = 0
    device: str = ""
    memory_mib: int = 0
    slurm_job_id: str | None = None
    ends_at: datetime | None = None


async def register(session: AsyncSession, who: Identity, now: datetime) -> GpuWorker:
    row = await session.scalar(
        select(GpuWorker).where(GpuWorker.name == who.name).with_for_update()
    )
    if row is None:
        row = GpuWorker(name=who.name, started_at=now, seen_at=now, jobs_run=0)
        session.add(row)
    row.host, row.pid, row.device = who.host[:200], who.pid, who.device[:32]
    row.memory_mib = who.memory_mib
    row.slurm_job_id, row.ends_at = who.slurm_job_id, who.ends_at
    row.state, row.job_id, row.started_at, row.seen_at = IDLE, None, now, now
    row.stopped_at, row.note = None, ""
    await session.flush()
    return row


async def beat(
    session: AsyncSession,
    name: str,
    now: datetime,
    *,
    state: str | None = None,
    job_id: int | None = None,
    note: str | None = None,
    ran: bool = False,
) -> None:
    row = await session.scalar(select(GpuWorker).where(GpuWorker.name == name))
    if row is None:
        return
    row.seen_at = now
    if state is not None:
        row.state = state
        row.job_id = job_id
        if state == STOPPED:
            row.stopped_at = now
    if note is not None:
        row.note = note[:200]
    if ran:
        row.jobs_run += 1


async def live(session: AsyncSession, now: datetime) -> list[GpuWorker]:
    """Workers that beat within :data:`STALE` and have not stopped."""
    return list(
        await session.scalars(
            select(GpuWorker)
            .where(GpuWorker.seen_at >= now - STALE, GpuWorker.state.in_((IDLE, BUSY)))
            .order_by(GpuWorker.name)
        )
    )


async def all_workers(session: AsyncSession) -> list[GpuWorker]:
    return list(await session.scalars(select(GpuWorker).order_by(GpuWorker.id)))


#: Rows of workers not seen for this long are removed (a worker that comes back
#: registers again).
KEPT = timedelta(days=7)


async def prune(session: AsyncSession, now: datetime) -> int:
    result = await session.execute(delete(GpuWorker).where(GpuWorker.seen_at < now - KEPT))
    return int(getattr(result, "rowcount", 0) or 0)
