"""`coursebot slurm …`: GPU workers on a Slurm cluster (see gpu_queue/slurm.py).

    coursebot slurm workers --partition gpu --gpus 1 --time 4:00:00 [--account A] [--qos Q]
    coursebot slurm status
    coursebot slurm stop [JOB ...]     # every worker job without JOB

Registered in bot/cli.py with ``app.add_typer(slurm_app, name="slurm")``.
"""

from __future__ import annotations

import asyncio
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer

from gpu_queue import slurm

slurm_app = typer.Typer(
    help="GPU workers on a Slurm cluster: submit them, see them, stop them.",
    no_args_is_help=True,
)

DbOption = Annotated[
    str | None,
    typer.Option("--database-url", envvar="DATABASE_URL", help="Overrides DATABASE_URL."),
]


def _fail(message: str) -> None:
    typer.secho(message, fg=typer.colors.RED, err=True)
    raise typer.Exit(1)


def _settings(database_url: str | None):  # type: ignore[no-untyped-def]
    from pydantic import ValidationError

    from bot.settings import Settings

    try:
        settings = Settings()
    except ValidationError as exc:
        _fail(f"The settings are not valid: {exc}")
    if database_url:
        settings.database_url = database_url
    return settings


@slurm_app.command("workers")
def workers(
    partition: Annotated[
        str | None,
        typer.Option(help="Slurm partition (default COURSEBOT_SLURM_PARTITION)."),
    ] = None,
    gpus: Annotated[int, typer.Option(help="GPUs per worker job (0: CPU only).")] = 1,
    time: Annotated[
        str | None,
        typer.Option(help="Time limit, e.g. 4:00:00 (default COURSEBOT_SLURM_TIME)."),
    ] = None,
    account: Annotated[str | None, typer.Option(help="Slurm account to charge.")] = None,
    qos: Annotated[str | None, typer.Option(help="Slurm quality of service.")] = None,
    count: Annotated[int, typer.Option(help="How many worker jobs to submit.")] = 1,
    cpus: Annotated[int, typer.Option(help="CPUs per worker job.")] = 1,
    mem: Annotated[str | None, typer.Option(help="Memory per job, e.g. 16G.")] = None,
    dry_run: Annotated[bool, typer.Option(help="Print the batch script only.")] = False,
    database_url: DbOption = None,
) -> None:
    """Submit long-lived GPU workers that serve the queue until their time limit and
    then hand any running job back (Slurm's USR1, 60 s before the end)."""
    settings = _settings(database_url)
    partition = partition or settings.slurm_partition
    time = time or settings.slurm_time
    if not partition:
        _fail("Name a partition: --partition P (or set COURSEBOT_SLURM_PARTITION).")
    if settings.database_url.startswith("sqlite"):
        typer.secho(
            "Note: the database is SQLite; Slurm workers reach it only on this node "
            "(use Postgres for workers on other nodes).",
            fg=typer.colors.YELLOW,
            err=True,
        )
    req = slurm.WorkerRequest(
        partition=partition,  # type: ignore[arg-type]
        gpus=gpus,
        time=time,
        account=account or settings.slurm_account,
        qos=qos or settings.slurm_qos,
        count=count,
        cpus=cpus,
        mem=mem,
        log_dir=settings.data_dir / "slurm",
        workdir=Path.cwd(),
    )
    try:
        if dry_run:
            typer.echo(slurm.batch_script(req))
            return
        env = {
            "DATABASE_URL": settings.database_url,
            "COURSEBOT_DATA_DIR": str(Path(settings.data_dir).resolve()),
            "COURSEBOT_GPU_QUEUE": settings.gpu_queue,
        }
        ids = slurm.submit(req, env=env)
    except slurm.SlurmError as exc:
        _fail(str(exc))
    typer.echo(
        f"Submitted {len(ids)} GPU worker job{'s' * (len(ids) != 1)} to partition {partition}: {', '.join(ids)} "
        f"({gpus} GPU{'s' * (gpus != 1)}, {time} each). `coursebot slurm status` shows them; logs in "
        f"{req.log_dir}/."
    )


@slurm_app.command("status")
def status(database_url: DbOption = None) -> None:
    """The worker jobs Slurm knows, with what each worker is doing."""
    settings = _settings(database_url)
    try:
        jobs = slurm.jobs()
    except slurm.SlurmError as exc:
        _fail(str(exc))
    rows = asyncio.run(_worker_rows(settings.database_url))
    if not jobs:
        typer.echo("No GPU worker jobs in Slurm's queue.")
    else:
        typer.echo(f"{'JOB':>8}  {'STATE':<10} {'USED':>10} {'LEFT':>10}  {'WHERE':<14} WORKER")
        for j in jobs:
            worker = rows.get(j.job_id, "not registered yet")
            typer.echo(
                f"{j.job_id:>8}  {j.state:<10} {j.used:>10} {j.left:>10}  {j.where:<14} {worker}"
            )
    gone = sorted(set(rows) - {j.job_id for j in jobs})
    if gone:
        typer.echo(f"Ended Slurm workers seen recently: {', '.join(gone)}.")


async def _worker_rows(url: str) -> dict[str, str]:
    from db.session import Database
    from gpu_queue import fleet

    db = Database(url)
    try:
        async with db.session() as session:
            now = datetime.now(UTC)
            out = {}
            for w in await fleet.all_workers(session):
                if not w.slurm_job_id:
                    continue
                seen = int((now - w.seen_at).total_seconds())
                doing = f"job #{w.job_id}" if w.state == fleet.BUSY and w.job_id else w.state
                out[w.slurm_job_id] = f"{w.name}: {doing}, seen {seen} s ago, {w.jobs_run} run"
            return out
    except Exception as exc:  # the database is away: Slurm's view still helps
        return {"?": f"(the database did not answer: {type(exc).__name__})"}
    finally:
        await db.dispose()


@slurm_app.command("stop")
def stop(
    job: Annotated[list[str] | None, typer.Argument(help="Worker job ids (default: all).")] = None,
) -> None:
    """Stop worker jobs (scancel): each hands its running job back to the queue."""
    try:
        ids = job or [j.job_id for j in slurm.jobs()]
        slurm.cancel(ids)
    except slurm.SlurmError as exc:
        _fail(str(exc))
    typer.echo(f"Stopping {len(ids)} worker job{'s' * (len(ids) != 1)}: {', '.join(ids) or '—'}.")


def main() -> None:  # pragma: no cover - `python -m bot.cli_slurm`
    os.environ.setdefault("COURSEBOT_LOG_LEVEL", "WARNING")
    slurm_app()


if __name__ == "__main__":  # pragma: no cover
    main()
