"""The chaos benchmark's shared virtual time, and its stand-in GPU demo.

**Time.** The week is played on virtual time: while nothing runs outside the bot, its
clock stands still and jumps to the next instant anything is due (so a week takes
seconds). While a GPU job is queued or running, a worker process in real time is part of
the story, so the clock *flows* from the instant it had, :data:`RATE` virtual seconds per
real second, and the worker reads the same clock (heartbeats, claims, the recovery of a
dead worker's job once its heartbeat is 30 s old). The clock lives in a small state file
per bot instance, together with how far the script of commands has run, so a bot
restarted after ``kill -9`` (or a replica taking over) resumes where the other stopped.

**The demo.** Every demo in ``gpu_queue/demos`` imports torch in the worker's child; the
cheapest one, ``conv2d``, runs in about 50 ms once torch is in, but importing torch takes
about 3 s here, paid again each time a killed worker starts (its warm child imports
torch before the first job), and torch is an optional extra. By default the benchmark's
processes therefore add ``chaos-conv2d`` to the catalogue: the lecture's 2D convolution
worked out in plain Python in eight steps (0.2 s each, reporting progress), with a small
PNG of the result; the worker, its warm child, the job rows, the heartbeats and the
result posting are the real ones. ``python -m bench.chaos --demo conv2d`` runs the real
demo instead (torch needed).
"""

from __future__ import annotations

import json
import os
import struct
import sys
import time
import zlib
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

#: Virtual seconds per real second while a GPU job is in flight: a worker's heartbeat
#: every 2 real seconds is 10 virtual ones, well inside the 30 s after which a job is
#: presumed dead; a killed worker's job is recovered after 6 real seconds.
RATE = 5.0
#: The first instant of the week played (Fri 2023-08-25, 10 AM in the course's zone).
START = datetime.fromisoformat("2023-08-25T14:00:00+00:00")
DEMO = "chaos-conv2d"


class ChaosState:
    """The state file of one bot instance: the clock's anchor (``v``: virtual instant;
    ``r``: the real time at which it flowed from ``v``, None while it stands still) and
    ``done``: how many commands of the script have run."""

    def __init__(self, path: Path, start: datetime) -> None:
        self.path = path
        self.v = start
        self.r: float | None = None
        self.done = 0
        self.load()

    def load(self) -> None:
        try:
            data = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return
        self.v = datetime.fromisoformat(data["v"])
        self.r = data.get("r")
        self.done = int(data.get("done", 0))

    def save(self) -> None:
        """Atomically (a ``kill -9`` keeps the page cache, so no fsync is needed)."""
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"v": self.v.isoformat(), "r": self.r, "done": self.done}))
        os.replace(tmp, self.path)


class SharedClock:
    """The bot's clock (it moves it) or, with ``follow=True``, a reader's (the GPU
    worker): the state file is read at every call."""

    def __init__(self, state: ChaosState, *, follow: bool = False) -> None:
        self.state = state
        self.follow = follow

    @property
    def flowing(self) -> bool:
        return self.state.r is not None

    def now(self) -> datetime:
        if self.follow:
            self.state.load()
        s = self.state
        if s.r is None:
            return s.v
        return s.v + timedelta(seconds=RATE * max(0.0, time.time() - s.r))

    def jump(self, at: datetime) -> None:
        """Stand still at ``at`` (never backwards)."""
        self.state.v, self.state.r = max(at, self.now()), None
        self.state.save()

    def flow(self) -> None:
        """Run on from now, RATE times real time."""
        if self.state.r is None:
            self.state.r = time.time()
            self.state.save()


# ----------------------------------------------------------------------------- the demo

LECTURE_F = [[1, 2, 3, 4], [5, 6, 7, 8], [9, 10, 11, 12], [13, 14, 15, 16]]
LECTURE_G = [[1, 2, 1], [0, 0, 0], [1, 2, 1]]


class ChaosParams(BaseModel):
    steps: int = Field(8, ge=1, le=50, description="how many steps (0.2 s each)")


def _png(grid: list[list[float]]) -> bytes:
    """A tiny greyscale PNG of ``grid`` (no imaging library needed)."""
    top = max(max(r) for r in grid) or 1.0
    raw = b"".join(b"\x00" + bytes(int(255 * v / top) for v in row) for row in grid)

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))

    head = struct.pack(">IIBBBBB", len(grid[0]), len(grid), 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", head)
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )


def run_chaos_demo(params: BaseModel, device: str, progress: Any) -> Any:
    from gpu_queue.demos import DemoResult

    assert isinstance(params, ChaosParams)
    kh, kw = len(LECTURE_G), len(LECTURE_G[0])
    padded = [[0] * (kw - 1 + 4) for _ in range(kh - 1)] + [[0] * (kw - 1) + r for r in LECTURE_F]
    out = [
        [
            float(sum(padded[i + a][j + b] * LECTURE_G[a][b] for a in range(kh) for b in range(kw)))
            for j in range(4)
        ]
        for i in range(4)
    ]
    for step in range(params.steps):
        time.sleep(0.2)
        progress((step + 1) / params.steps, f"step {step + 1} of {params.steps}")
    rows = "; ".join(" ".join(f"{v:g}" for v in row) for row in out)
    return DemoResult(text=f"h = f * g = [{rows}] ({device})", images=[("h.png", _png(out))])


def install_demo() -> None:
    """Add ``chaos-conv2d`` to the demo catalogue of this process (and of the children
    it spawns, which import this module again; the bot calls it after loading the
    commands). Unless the run uses a real demo (``CHAOS_DEMO``), the worker's child then
    reports the CPU as its device without importing torch (which it would otherwise do
    before its first job)."""
    import gpu_queue.demos as demos

    if getattr(demos, "_chaos_installed", False):
        return
    original = demos.catalogue

    def catalogue() -> dict[str, Any]:
        try:
            found = original()
        except ImportError:
            found = {}
        found[DEMO] = demos.Demo(
            DEMO,
            "The lecture's 2D convolution in plain Python (the chaos benchmark's demo)",
            ChaosParams,
            run_chaos_demo,
            60.0,
        )
        return found

    def pick_device(prefer: str = "auto") -> str:
        return "cpu"  # the benchmark's demo needs no torch: do not pay for its import

    demos.catalogue = catalogue  # type: ignore[assignment]
    if os.environ.get("CHAOS_DEMO", DEMO) == DEMO:
        demos.pick_device = pick_device  # type: ignore[assignment]
    demos._chaos_installed = True  # type: ignore[attr-defined]
    core = sys.modules.get("commands.gpu")  # the core imported the catalogue by name
    if core is not None:
        core.catalogue = catalogue  # type: ignore[attr-defined]
