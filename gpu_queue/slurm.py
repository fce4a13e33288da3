"""GPU workers on a Slurm cluster: submitted with ``sbatch``, serving the course's queue
until their time limit, and leaving cleanly.

A university's GPUs usually sit behind Slurm. ``coursebot slurm workers --partition P
--gpus N --time T`` submits one batch job per worker (``--count``); each runs
``coursebot worker`` (one process per allocated GPU) against the course's database,
which must be reachable from the compute nodes (Postgres; SQLite only on a single
node whose disk the bot shares). The bot's settings travel in the environment of the
submission (``sbatch --export=ALL``), never in the script, which Slurm stores.

**Leaving cleanly.** The script asks Slurm for ``--signal=B:USR1@60``: 60 s before the
time limit the worker gets ``SIGUSR1``, hands its running job back to the queue (it is
queued again, at its place, and runs once on another worker) and exits; in its last
minute it claims no new job. ``scancel`` (``SIGTERM``) does the same. A worker killed
without warning (a node failure, ``SIGKILL``) stops beating; after 30 s the bot queues
its job again (or expires it if old), as for any dead worker.

``coursebot slurm status`` joins ``squeue`` (state, time used and left, node) with the
workers' own rows (idle or running which job, last seen).
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

JOB_NAME = "coursebot-gpu"
#: Seconds before the time limit at which Slurm warns the worker (``--signal``).
WARN_S = 60


class SlurmError(Exception):
    """Slurm refused or is not there; ``str()`` is what the instructor reads."""


@dataclass(frozen=True)
class Allocation:
    """The Slurm job this process runs in."""

    job_id: str
    ends_at: datetime | None


@dataclass(frozen=True)
class WorkerRequest:
    partition: str
    gpus: int
    time: str
    account: str | None = None
    qos: str | None = None
    count: int = 1
    cpus: int = 1
    mem: str | None = None
    log_dir: Path = Path("data/slurm")
    workdir: Path = Path(".")
    #: The ``coursebot`` executable the job runs (default: the one next to this Python).
    coursebot: str | None = None


@dataclass(frozen=True)
class SlurmJob:
    job_id: str
    state: str
    used: str
    limit: str
    left: str
    partition: str
    where: str  # the node, or why it waits


def available() -> str | None:
    """None when ``sbatch`` and a controller answer; else why not (for a message or a
    skipped test)."""
    for tool in ("sbatch", "squeue", "scancel", "scontrol"):
        if shutil.which(tool) is None:
            return f"`{tool}` is not installed (Slurm's client tools)"
    try:
        out = subprocess.run(
            ["scontrol", "ping"], capture_output=True, text=True, timeout=15, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"the Slurm controller does not answer ({exc})"
    if out.returncode != 0 or "UP" not in out.stdout:
        return f"the Slurm controller does not answer: {(out.stdout + out.stderr).strip()}"
    return None


def time_limit_seconds(value: str) -> int:
    """Slurm's time formats: ``M``, ``M:S``, ``H:M:S``, ``D-H``, ``D-H:M``, ``D-H:M:S``."""
    v = value.strip()
    if "-" in v:
        days, rest = v.split("-", 1)
        parts = [int(p) for p in rest.split(":")] + [0, 0]
        h, m, s = parts[0], parts[1], parts[2]
        return int(days) * 86400 + h * 3600 + m * 60 + s
    if not re.fullmatch(r"\d+(:\d+){0,2}", v):
        raise SlurmError(f"`{value}` is not a Slurm time limit (e.g. 30, 2:00:00, 1-00:00).")
    parts = [int(p) for p in v.split(":")]
    if len(parts) == 1:
        return parts[0] * 60
    if len(parts) == 2:
        return parts[0] * 60 + parts[1]
    return parts[0] * 3600 + parts[1] * 60 + parts[2]


def batch_script(req: WorkerRequest) -> str:
    """The batch script of one worker job (see the module's documentation)."""
    if req.gpus < 0 or req.count < 1:
        raise SlurmError("--gpus must be 0 or more and --count at least 1.")
    if time_limit_seconds(req.time) <= WARN_S:
        raise SlurmError(f"--time must be longer than {WARN_S} s (the worker's warning time).")
    coursebot = req.coursebot or str(Path(sys.executable).parent / "coursebot")
    lines = [
        "#!/bin/bash",
        f"#SBATCH --job-name={JOB_NAME}",
        f"#SBATCH --partition={req.partition}",
        f"#SBATCH --time={req.time}",
        "#SBATCH --ntasks=1",
        f"#SBATCH --cpus-per-task={req.cpus}",
        f"#SBATCH --signal=B:USR1@{WARN_S}",
        f"#SBATCH --output={req.log_dir.resolve()}/{JOB_NAME}-%j.log",
        "#SBATCH --export=ALL",
        "#SBATCH --no-requeue",
    ]
    if req.gpus:
        lines.append(f"#SBATCH --gres=gpu:{req.gpus}")
    if req.account:
        lines.append(f"#SBATCH --account={req.account}")
    if req.qos:
        lines.append(f"#SBATCH --qos={req.qos}")
    if req.mem:
        lines.append(f"#SBATCH --mem={req.mem}")
    gpu = '"${CUDA_VISIBLE_DEVICES:-cpu}"' if req.gpus else "cpu"
    lines += [
        "",
        "# A GPU worker of the course bot (coursebot slurm workers). It serves the queue",
        f"# until its time limit; Slurm's USR1 ({WARN_S} s before) or scancel's TERM makes it",
        "# hand its running job back to the queue and exit.",
        "set -u",
        f"cd {shlex.quote(str(req.workdir.resolve()))}",
        'echo "coursebot GPU worker: job $SLURM_JOB_ID on $(hostname), GPUs ${CUDA_VISIBLE_DEVICES:-none}"',
        f"exec {shlex.quote(coursebot)} worker --gpu {gpu}",
        "",
    ]
    return "\n".join(lines)


def submit(req: WorkerRequest, env: dict[str, str] | None = None) -> list[str]:
    """Submit ``req.count`` worker jobs; their ids. Raises :class:`SlurmError` with
    sbatch's own reason (no such partition, account or QOS; a time over the limit)."""
    why = available()
    if why is not None:
        raise SlurmError(f"Slurm is not available here: {why}.")
    script = batch_script(req)
    req.log_dir.mkdir(parents=True, exist_ok=True)
    ids = []
    for _ in range(req.count):
        try:
            out = subprocess.run(
                ["sbatch", "--parsable"],
                input=script,
                capture_output=True,
                text=True,
                timeout=60,
                env={**os.environ, **(env or {})},
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise SlurmError(f"sbatch could not be run: {exc}") from None
        if out.returncode != 0:
            reason = _sbatch_reason(out.stderr or out.stdout)
            done = (
                f" ({len(ids)} worker{' was' if len(ids) == 1 else 's were'} submitted: {', '.join(ids)})"
                if ids
                else ""
            )
            raise SlurmError(f"Slurm refused the worker job: {reason}{done}")
        ids.append(out.stdout.strip().split(";")[0])
    return ids


def _sbatch_reason(text: str) -> str:
    """sbatch's own words, without its prefixes: ``invalid partition specified: gpu``."""
    lines = [
        re.sub(r"^sbatch: error: (Batch job submission failed: )?", "", ln.strip())
        for ln in text.strip().splitlines()
        if ln.strip()
    ]
    return "; ".join(dict.fromkeys(lines)) or "no reason given"


def jobs(job_ids: list[str] | None = None) -> list[SlurmJob]:
    """The worker jobs ``squeue`` knows (pending or running), ours by name."""
    cmd = ["squeue", "-h", "-n", JOB_NAME, "-o", "%i|%T|%M|%l|%L|%P|%R"]
    if job_ids:
        cmd += ["-j", ",".join(job_ids)]
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise SlurmError(f"squeue could not be run: {exc}") from None
    if out.returncode != 0:
        if "Invalid job id" in out.stderr:
            return []
        raise SlurmError(f"squeue failed: {out.stderr.strip()}")
    found = []
    for line in out.stdout.splitlines():
        parts = line.split("|")
        if len(parts) == 7:
            found.append(SlurmJob(*parts))
    return found


def cancel(job_ids: list[str]) -> None:
    """``scancel``: each worker hands its job back and exits (SIGTERM)."""
    if not job_ids:
        return
    out = subprocess.run(
        ["scancel", *job_ids], capture_output=True, text=True, timeout=30, check=False
    )
    if out.returncode != 0:
        raise SlurmError(f"scancel failed: {out.stderr.strip()}")


def this_allocation(environ: dict[str, str] | None = None) -> Allocation | None:
    """The Slurm job this process runs in, with the end of its time limit (None when
    not under Slurm)."""
    env = os.environ if environ is None else environ
    job_id = env.get("SLURM_JOB_ID")
    if not job_id:
        return None
    end = env.get("SLURM_JOB_END_TIME")
    if end and end.isdigit():
        return Allocation(job_id, datetime.fromtimestamp(int(end), UTC))
    return Allocation(job_id, _end_from_scontrol(job_id))


def _end_from_scontrol(job_id: str) -> datetime | None:
    try:
        out = subprocess.run(
            ["scontrol", "show", "job", "-o", job_id],
            capture_output=True,
            text=True,
            timeout=15,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    m = re.search(r"\bEndTime=(\S+)", out.stdout)
    if not m or m.group(1) in ("Unknown", "None"):
        return None
    try:  # the controller's local time, as this host's clock reads it
        return datetime.fromisoformat(m.group(1)).astimezone(UTC)
    except ValueError:
        return None


def describe_left(seconds: float) -> str:
    return str(timedelta(seconds=max(0, int(seconds))))
