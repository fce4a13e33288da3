"""The scripted shell's pretend clock: with --now it is virtual time in the course's
zone; `:advance` delivers every post that falls due on the way, at its own instant and
in order (a battle's "1 minute left" included); `:wait` works; two runs of one script
print the same transcript."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

SCRIPT = """\
announce "Bring laptops on Monday." at 2023-08-26T09:00
:as maya
talk timer 7 minutes=20
:advance 14m
:wait 300
:advance 50s
:advance 10s
:advance 1m
:advance 2d
"""


def run_script(tmp: Path, name: str) -> str:
    """One scripted run on a fresh SQLite database; its standard output."""
    work = tmp / name
    work.mkdir()
    (work / "script.txt").write_text(SCRIPT, encoding="utf-8")
    env = {
        **os.environ,
        "DATABASE_URL": f"sqlite+aiosqlite:///{work / 'bot.db'}",
        "COURSEBOT_DATA_DIR": str(work / "data"),
        "COURSEBOT_GPU_WORKER": "false",
    }
    env.pop("COURSEBOT_LOG_FILE", None)
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "bot.cli",
            "shell",
            "--script",
            str(work / "script.txt"),
            "--now",
            "2023-08-25T10:00",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr == "", done.stderr  # the log went to its file, not the terminal
    assert (work / "data" / "coursebot.log").exists()
    return done.stdout


def test_advance_delivers_every_post_in_order_and_runs_are_identical(tmp_path: Path) -> None:
    first = run_script(tmp_path, "one")
    second = run_script(tmp_path, "two")
    assert first == second

    # --now is read in the course's zone (New York), and the clock is shown in it.
    assert "(clock moved to Fri 2023-08-25 10:14:00 EDT)" in first
    # The talk timer (20 minutes from 10:00) warns at 5 and 1 minutes left, in order,
    # then says time's up: `:wait 300` passed 5 minutes of virtual time at once.
    five = first.index("5 minutes left")
    one = first.index("1 minute left")
    up = first.index("time's up")
    assert five < one < up
    assert first.count("1 minute left") == 1
    # `:advance 2d` went through the scheduled announcement (Sat 9 AM) before the
    # 24-hour rankings reminder (Sat 11:59 PM), each at its own time.
    ann = first.index("Bring laptops on Monday.", first.index("talk timer"))
    rem = first.index("Reminder: **Paper rankings** is due")
    assert ann < rem
    assert "(clock moved to Sun 2023-08-27 10:21:00 EDT)" in first
