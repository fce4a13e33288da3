"""Latency and throughput of the command core under 200 concurrent users.

Run from the repository root::

    python -m bench                      # both backends, 200 users, prints the table
    python -m bench --backends sqlite    # only SQLite
    python -m bench --users 50 --commands-per-user 20 --think-ms 0,500,2000

What it does, per backend (a fresh SQLite file in a temporary folder, and a throwaway
Postgres database ``coursebot_bench_<random>`` created through ``--pg-url`` and dropped
afterwards): migrate, import the sample course (``examples/comp790-23f.yaml``) plus
``--users`` generated students with no linked account, then release all users at once.
Each user is an asyncio task that speaks through the real ``CommandCore.handle_text``:
first ``register <email>`` (a write), then a seeded random mix of reads (``papers``,
``schedule week=3``, ``deadlines``, ``whoami``, ...) and writes (see ``MIX`` in
``bench/workload.py``). Each backend is measured twice by default (``--think-ms 0,2000``):
a burst, where every user sends back to back (the capacity, and the worst case), and a
paced run, where each user pauses about 2 s before each command (about 100 commands/s
offered by 200 users: the latency a class would see at a busy moment). During each paced
run the instructor also runs ``assign`` again and again on a course of ``--assign``
students (300 by default, all of them ranked): the solver works on a snapshot in a
thread, so the class should not feel it.

What it measures: per-command latency (p50, p95, p99, max), throughput (commands per
second over the measured run), errors (any error reply is counted and printed, and the
exit status is 1), and peak RSS. The target from the issue is p99 under 50 ms.
A Postgres that does not answer gives a "skipped" row with the reason.

The other benchmarks are modules of their own, listed with their figures in
docs/benchmarks.md: ``bench.burst`` (class-sized bursts on the terminal, Discord and
Slack: 60 votes on a poll, 50 lookups at once), ``bench.chaos``, ``bench.groups``,
``bench.gpu``, ``bench.demos``, ``bench.assign``, ``bench.web``.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import traceback
from pathlib import Path

from bench.report import NotRun, error_report, footer, main_table, per_command_table
from bench.workload import (
    PG_ADMIN_URL,
    RunResult,
    pg_admin,
    postgres_database,
    run_backend,
    sqlite_database,
)

BACKENDS = ("sqlite", "postgres")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    p.add_argument("--users", type=int, default=200, help="simulated users (default 200)")
    p.add_argument(
        "--commands-per-user",
        type=int,
        default=10,
        help="commands each user runs, `register` included (default 10, which keeps the "
        "default run, 2 backends x 2 paces, under about 2 minutes on 2 cores)",
    )
    p.add_argument(
        "--backends",
        default=",".join(BACKENDS),
        help="comma-separated: sqlite, postgres (default both)",
    )
    p.add_argument(
        "--pg-url",
        default=PG_ADMIN_URL,
        help="an ADMIN url; a throwaway database is created next to it and dropped",
    )
    p.add_argument(
        "--think-ms",
        default="0,2000",
        help="comma-separated mean pauses before each command (uniform), one run per value "
        "and backend; 0 = a burst, back to back (default 0,2000)",
    )
    p.add_argument("--seed", type=int, default=790, help="seed of the command mix")
    p.add_argument(
        "--assign",
        type=int,
        default=300,
        help="during the paced runs the instructor runs `assign` again and again on a course "
        "of this many students, all ranked (default 300; 0: no assign)",
    )
    args = p.parse_args(argv)
    args.backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    try:
        args.think_ms = [float(t) for t in args.think_ms.split(",") if t.strip()]
    except ValueError:
        p.error("--think-ms takes numbers, e.g. 0,1000")
    if not args.think_ms or min(args.think_ms) < 0:
        p.error("--think-ms needs at least one value, none negative")
    unknown = set(args.backends) - set(BACKENDS)
    if unknown:
        p.error(f"unknown backend(s): {', '.join(sorted(unknown))}; use sqlite and/or postgres")
    if args.users < 1 or args.commands_per_user < 1:
        p.error("--users and --commands-per-user must be at least 1")
    return args


async def run_one(backend: str, think_ms: float, args: argparse.Namespace) -> RunResult | NotRun:
    """One measured run on a fresh database; a NotRun if it could not be measured."""
    opts = {
        "users": args.users,
        "commands_per_user": args.commands_per_user,
        "seed": args.seed,
        "think_ms": think_ms,
        "assign_students": args.assign if think_ms > 0 else 0,
    }
    with tempfile.TemporaryDirectory(prefix="coursebot-bench-") as tmp_name:
        tmp = Path(tmp_name)
        try:
            if backend == "sqlite":
                async with sqlite_database(tmp) as url:
                    return await run_backend(backend, url, tmp, **opts)
            try:
                await pg_admin(args.pg_url, "SELECT 1")
            except Exception as exc:
                return NotRun(
                    backend, think_ms, f"Postgres at {args.pg_url} is not reachable ({exc!r})"
                )
            async with postgres_database(args.pg_url) as url:
                return await run_backend(backend, url, tmp, **opts)
        except Exception as exc:
            traceback.print_exc()
            return NotRun(backend, think_ms, repr(exc), failed=True)


async def main(args: argparse.Namespace) -> int:
    results: list[RunResult | NotRun] = []
    for backend in args.backends:
        for think_ms in args.think_ms:
            print(f"running {backend}, think {think_ms:g} ms ...", file=sys.stderr, flush=True)
            results.append(await run_one(backend, think_ms, args))
    print()
    print(main_table(results))
    measured = [r for r in results if isinstance(r, RunResult)]
    if measured:
        print()
        print(per_command_table(measured))
    print()
    for line in footer(
        results,
        commands_per_user=args.commands_per_user,
        seed=args.seed,
    ):
        print(line)
    for r in measured:
        if r.assigns:
            mean = sum(r.assigns) / len(r.assigns)
            print(
                f"{r.label}: beside the users, `assign` on {r.assign_students} students ran "
                f"{len(r.assigns)} times (mean {mean:.2f} s, max {max(r.assigns):.2f} s)."
            )
    loud = error_report(results)
    if loud:
        print()
        print("\n".join(loud))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main(parse_args())))
