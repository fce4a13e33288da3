"""The architecture's rules, checked: domain code never imports a chat library, and
torch is imported only by the GPU package."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
IMPORT = r"^\s*(?:import|from)\s+{}\b"


def _offenders(pattern: str, folders: list[str]) -> list[str]:
    rx = re.compile(IMPORT.format(pattern), re.M)
    return [
        str(p.relative_to(ROOT))
        for folder in folders
        for p in (ROOT / folder).rglob("*.py")
        if rx.search(p.read_text(encoding="utf-8"))
    ]


def test_domain_code_never_imports_a_chat_library() -> None:
    assert _offenders(r"(discord|slack_bolt|slack_sdk)", ["commands", "db", "gpu_queue"]) == []


def test_torch_is_imported_only_in_gpu_queue() -> None:
    assert _offenders("torch", ["commands", "db", "bot", "migrations"]) == []
    code = "import bot.app, bot.shell, commands; commands.load_registry(); import sys; print('torch' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert out.stdout.strip() == "False", out.stderr
