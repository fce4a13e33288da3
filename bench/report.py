"""Latency statistics and the printed tables."""

from __future__ import annotations

import math
import os
import platform
import resource
from collections import Counter
from dataclasses import dataclass

import sqlalchemy

from bench.workload import RunResult, all_ops
from commands.replies import Table, render_table

#: The issue's target.
P99_TARGET_MS = 50.0


@dataclass(frozen=True)
class NotRun:
    """A backend that was skipped (e.g. no Postgres server) or failed before measuring."""

    backend: str
    think_ms: float
    reason: str
    failed: bool = False


def percentile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile (``q`` in 0..100) of already sorted values."""
    if not sorted_values:
        return math.nan
    rank = max(1, math.ceil(q / 100 * len(sorted_values)))
    return sorted_values[rank - 1]


def _think(think_ms: float) -> str:
    return "0 (burst)" if think_ms <= 0 else f"{think_ms:g}"


def _ms(seconds: float) -> str:
    return "—" if math.isnan(seconds) else f"{seconds * 1000:.1f}"


def peak_rss_mib() -> float:
    """Peak resident memory of this process (Linux reports KiB, macOS bytes)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if platform.system() == "Darwin" else peak / 1024


def summary_row(r: RunResult) -> list[str]:
    lat = sorted(s.seconds for s in r.samples)
    writes = sum(1 for s in r.samples if s.write)
    p99 = percentile(lat, 99)
    n_err = len(r.errors) + len(r.problems)
    ok = p99 * 1000 < P99_TARGET_MS and n_err == 0
    verdict = "yes" if ok else ("NO (errors)" if n_err else "NO")
    return [
        r.backend,
        str(r.users),
        _think(r.think_ms),
        str(len(lat)),
        f"{len(lat) - writes}/{writes}",
        f"{len(lat) / r.wall_seconds:.0f}" if r.wall_seconds > 0 else "—",
        _ms(percentile(lat, 50)),
        _ms(percentile(lat, 95)),
        _ms(p99),
        _ms(lat[-1] if lat else math.nan),
        str(n_err),
        verdict,
    ]


COLUMNS = [
    "Backend",
    "Users",
    "Think ms",
    "Commands",
    "Reads/writes",
    "Cmd/s",
    "p50 ms",
    "p95 ms",
    "p99 ms",
    "Max ms",
    "Errors",
    f"p99 < {P99_TARGET_MS:g} ms",
]


def main_table(results: list[RunResult | NotRun]) -> str:
    rows = []
    for r in results:
        if isinstance(r, NotRun):
            word = "FAILED" if r.failed else "skipped"
            rows.append([r.backend, "—", _think(r.think_ms), *["—"] * (len(COLUMNS) - 4), word])
        else:
            rows.append(summary_row(r))
    return render_table(Table(COLUMNS, rows), width=200)


def per_command_table(results: list[RunResult]) -> str:
    """Latency by command, so a slow one stands out."""
    columns = ["Command", "R/W", "n"] + [f"{r.label}: p50 / p99" for r in results]
    rows = []
    for name, op in all_ops().items():
        row = [name, "W" if op.write else "R", str(sum(s.op == name for s in results[0].samples))]
        for r in results:
            lat = sorted(s.seconds for s in r.samples if s.op == name)
            row.append(f"{_ms(percentile(lat, 50))} / {_ms(percentile(lat, 99))}")
        rows.append(row)
    return render_table(Table(columns, rows, title="By command (ms)"), width=200)


def error_report(results: list[RunResult | NotRun]) -> list[str]:
    """Loud lines for every failed command, failed check or failed backend; [] if none."""
    lines = []
    for r in results:
        if isinstance(r, NotRun):
            if r.failed:
                lines.append(f"!! {r.backend}: the run FAILED: {r.reason}")
            continue
        if r.errors:
            lines.append(
                f"!! {r.label}: {len(r.errors)} of {len(r.samples)} commands replied with an "
                "ERROR; these numbers do not measure a working bot."
            )
            for msg, n in Counter(s.error for s in r.errors).most_common(5):
                lines.append(f"!!   {n} x {msg}")
        lines.extend(f"!! {r.label}: check failed: {p}" for p in r.problems)
    return lines


def footer(
    results: list[RunResult | NotRun],
    *,
    commands_per_user: int,
    seed: int,
) -> list[str]:
    lines = []
    for r in results:
        if isinstance(r, NotRun) and not r.failed:
            lines.append(f"{r.backend}: skipped: {r.reason}")
        elif isinstance(r, RunResult):
            lines.append(
                f"{r.label}: setup {r.setup_seconds:.1f} s (migrate, import, warm-up), "
                f"measured run {r.wall_seconds:.1f} s"
            )
    lines += [
        f"Each user: `register <email>` then {commands_per_user - 1} commands from the mix. "
        "Latency = time spent in CommandCore.handle_text.",
        "Burst (think 0): all users start together and send back to back, so Cmd/s is the "
        "capacity and latency is mostly queueing (users / capacity).",
        "Think T: before each command (the first too) a user pauses for a random time "
        "(uniform, mean T), so Cmd/s is the offered load, about users / T.",
        f"Peak RSS: {peak_rss_mib():.0f} MiB (whole process, all backends).  Seed {seed}.  "
        f"Python {platform.python_version()}, SQLAlchemy {sqlalchemy.__version__}, "
        f"{os.cpu_count()} CPUs.",
    ]
    return lines
