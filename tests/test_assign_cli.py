"""`coursebot assign solve` and `coursebot rankings import`, through the real executable."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
COURSEBOT = Path(sys.executable).parent / "coursebot"


def run(*args: str, tmp: Path, **env: str) -> subprocess.CompletedProcess[str]:
    full = {
        **os.environ,
        "DATABASE_URL": f"sqlite+aiosqlite:///{tmp}/cb.db",
        "COURSEBOT_DATA_DIR": str(tmp / "data"),
        "COURSEBOT_GPU_WORKER": "false",
        **env,
    }
    return subprocess.run(
        [str(COURSEBOT), *args], cwd=ROOT, env=full, capture_output=True, text=True, timeout=120
    )


def test_solve_without_a_bot_is_reproducible(tmp_path: Path) -> None:
    args = [
        "assign",
        "solve",
        "--course",
        "examples/comp790-23f.yaml",
        "--rankings",
        "examples/rankings.csv",
        "--seed",
        "1",
    ]
    first = run(*args, "--out", str(tmp_path / "a.csv"), tmp=tmp_path)
    assert first.returncode == 0, first.stderr
    # Coverage: all 18 papers are presented, so one student takes their 6th choice.
    assert "Worst rank: 6th (1 student)" in first.stdout
    assert "Empty papers: none" in first.stdout
    assert "Battles that run: #9 vs #10, #16 vs #17, #19 vs #20, #27 vs #28" in first.stdout
    again = run(*args, "--out", str(tmp_path / "b.csv"), tmp=tmp_path)
    assert (tmp_path / "a.csv").read_text() == (tmp_path / "b.csv").read_text()
    rows = list(csv.DictReader((tmp_path / "a.csv").open()))
    assert len(rows) == 50 and {r["kind"] for r in rows} == {"standard", "battle"}
    assert again.returncode == 0
    assert not (tmp_path / "cb.db").exists()  # no database involved


def test_solve_reports_bad_rankings_and_missing_files(tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("student,kind,rank,paper\nalice.chen@unc.edu,standard,1,1\nghost,battle,1,9\n")
    r = run(
        "assign",
        "solve",
        "--course",
        "examples/comp790-23f.yaml",
        "--rankings",
        str(bad),
        tmp=tmp_path,
    )
    assert r.returncode == 1
    assert "line 2: alice.chen@unc.edu (standard): presented by the instructor: #1" in r.stderr
    assert "line 3: 'ghost' is not a student of the course" in r.stderr
    assert "Traceback" not in r.stderr
    r = run("assign", "solve", "--course", "nope.yaml", "--rankings", str(bad), tmp=tmp_path)
    assert r.returncode == 1 and "Cannot read nope.yaml" in r.stderr


def test_rankings_import_into_the_database(tmp_path: Path) -> None:
    assert run("db", "upgrade", tmp=tmp_path).returncode == 0
    assert run("course", "import", "examples/comp790-23f.yaml", tmp=tmp_path).returncode == 0
    r = run("rankings", "import", "examples/rankings.csv", tmp=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "Imported 50 ranked lists for 25 students into comp790-23f" in r.stdout
    shell = subprocess.run(
        [str(COURSEBOT), "shell", "--as", "maya"],
        input="rankings status\n",
        cwd=ROOT,
        env={
            **os.environ,
            "DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path}/cb.db",
            "COURSEBOT_DATA_DIR": str(tmp_path),
        },
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert "25 of 25 students have submitted both rankings" in shell.stdout


def test_calendar_export_writes_the_whole_course(tmp_path: Path) -> None:
    from icalendar import Calendar

    assert run("course", "import", "examples/comp790-23f.yaml", tmp=tmp_path).returncode == 0
    r = run("calendar", "export", "-o", str(tmp_path / "c.ics"), tmp=tmp_path)
    assert r.returncode == 0, r.stderr
    cal = Calendar.from_ical((tmp_path / "c.ics").read_bytes())
    events = [e for e in cal.walk("VEVENT")]
    summaries = [str(e["SUMMARY"]) for e in events]
    assert "Due: Paper rankings" in summaries and len(events) > 30
    rankings = next(e for e in events if str(e["SUMMARY"]) == "Due: Paper rankings")
    start = rankings["DTSTART"].dt
    assert (start.hour, start.minute, str(start.tzinfo)) == (23, 59, "America/New_York")


def test_a_course_without_battles_solves(tmp_path: Path) -> None:
    import yaml

    data = yaml.safe_load((ROOT / "examples/comp790-23f.yaml").read_text())
    data["battles"] = []
    data["papers"] = [p for p in data["papers"] if p["slot"] != "battle"]
    course = tmp_path / "nobattles.yaml"
    course.write_text(yaml.safe_dump(data))
    rankings = tmp_path / "standard.csv"
    lines = (ROOT / "examples/rankings.csv").read_text().splitlines()
    rankings.write_text("\n".join(x for x in lines if ",battle," not in x) + "\n")
    r = run("assign", "solve", "--course", str(course), "--rankings", str(rankings), tmp=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "Battles that run: none" in r.stdout and "Empty papers: none" in r.stdout
