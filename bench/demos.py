"""How long each GPU demo takes with its default parameters, and what a warm worker saves.

Run from the repository root::

    python -m bench.demos                 # every demo on the CPU, then classify cold vs warm
    python -m bench.demos --device auto   # the GPU when there is one
    python -m bench.demos --only train video
    python -m bench.demos --threads 1     # one torch thread (a busy shared machine)

Part 1 runs each demo of the catalogue once, in this process, with its default
parameters (what ``gpu run <demo>`` does without parameters) and prints its wall time
and the first line of its answer. Part 2 measures the classify demo (the sample photo)
two ways:

* **cold** — a fresh Python process, as a worker that spawns one child per job pays on
  every job: start the interpreter, import the demo package and torch, load the
  MobileNetV2 weights, classify and draw;
* **warm** — the same job again in a process that already holds the model in
  ``classify``'s cache (``classify.load_model``): preprocessing, inference and drawing
  only; plus the bare inference (``classify.predict``) on its own.

The classify rows are skipped, with the reason, when no weights are installed (see
``gpu_queue/demos/classify.py``). Torch is imported by the demos, not here.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

from commands.replies import Table, render_table
from gpu_queue.demos import DemoError, catalogue, pick_device

ROOT = Path(__file__).resolve().parent.parent

#: The cold job, in a child process: every phase timed from the child's first line.
COLD = """
import json, sys, time
t0 = time.perf_counter()
from gpu_queue.demos import classify, pick_device
device = pick_device(sys.argv[1])  # imports torch
t1 = time.perf_counter()
model = classify.load_model(classify.weights_path(), device)
t2 = time.perf_counter()
result = classify.DEMO.run(classify.ClassifyParams(), device, lambda f, w: None)
t3 = time.perf_counter()
print(json.dumps({"imports": t1 - t0, "load": t2 - t1, "run": t3 - t2, "total": t3 - t0,
                  "top1": result.text.splitlines()[1].strip()}))
"""


def _quiet(_fraction: float, _what: str) -> None:
    return None


def _brief(value: object, width: int = 16) -> str:
    text = str(value)
    return text if len(text) <= width else text[: width - 1] + "…"


def time_demos(names: list[str], device: str) -> list[list[str]]:
    rows = []
    demos = catalogue()
    for name in names:
        demo = demos[name]
        params = demo.params()
        shown = ", ".join(
            f"{k}={_brief(v)}" for k, v in params.model_dump().items() if v is not None
        )
        start = time.perf_counter()
        try:
            result = demo.run(params, device, _quiet)
            seconds = f"{time.perf_counter() - start:.2f}"
            lines = [line.strip() for line in result.text.splitlines() if line.strip()]
            scores = [line for line in lines if re.search(r"[:—] [0-9.]+%", line)]
            note = " | ".join(scores[:3]) if scores else lines[0] if lines else ""
        except DemoError as exc:
            seconds, note = "skipped", str(exc)
        rows.append([name, shown, seconds, note])
        print(f"  {name}: {seconds} s", file=sys.stderr, flush=True)
    return rows


def classify_cold_warm(device: str) -> list[list[str]]:
    from gpu_queue.demos import classify

    try:
        path = classify.weights_path()
    except DemoError as exc:
        return [["classify cold / warm", "skipped", str(exc), ""]]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    start = time.perf_counter()
    out = subprocess.run(
        [sys.executable, "-c", COLD, device],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=True,
    )
    wall = time.perf_counter() - start
    cold = json.loads(out.stdout.strip().splitlines()[-1])
    rows = [
        [
            "classify cold (fresh process)",
            f"{wall:.2f}",
            f"start + imports {wall - cold['total'] + cold['imports']:.2f} s, "
            f"load weights {cold['load']:.2f} s, run {cold['run']:.2f} s",
            cold["top1"],
        ]
    ]
    classify.load_model(path, device)  # warm this process (not timed)
    classify.DEMO.run(classify.ClassifyParams(), device, _quiet)
    runs = []
    for _ in range(3):
        t = time.perf_counter()
        result = classify.DEMO.run(classify.ClassifyParams(), device, _quiet)
        runs.append(time.perf_counter() - t)
    rows.append(
        [
            "classify warm (model cached)",
            f"{min(runs):.2f}",
            "best of 3: preprocess + inference + drawing",
            result.text.splitlines()[1].strip(),
        ]
    )
    model = classify.load_model(path, device)
    frame = [classify.sample_image("chelsea")]
    infer = []
    for _ in range(5):
        t = time.perf_counter()
        classify.predict(model, frame, device)
        infer.append(time.perf_counter() - t)
    rows.append(
        ["classify warm, inference only", f"{min(infer):.3f}", "best of 5: one 224×224 image", ""]
    )
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.demos", description=__doc__.split("\n")[0])
    p.add_argument("--device", default="cpu", choices=["cpu", "auto"], help="default: cpu")
    p.add_argument("--only", nargs="*", help="only these demos (default: all)")
    p.add_argument("--no-cold", action="store_true", help="skip classify cold vs warm")
    p.add_argument(
        "--threads",
        type=int,
        help="CPU threads for torch (sets OMP_NUM_THREADS before torch loads; default: "
        "torch's own, one per core). On a machine that other processes keep busy, 1 is "
        "several times faster for these small models.",
    )
    args = p.parse_args(argv)
    if args.threads:
        os.environ["OMP_NUM_THREADS"] = str(args.threads)  # torch is not loaded yet
    device = pick_device(args.device)
    names = args.only or list(catalogue())
    unknown = sorted(set(names) - set(catalogue()))
    if unknown:
        p.error(f"unknown demo(s): {', '.join(unknown)}")
    print(f"Timing {len(names)} demo(s) on {device} ...", file=sys.stderr, flush=True)
    rows = time_demos(names, device)
    print(render_table(Table(["Demo", "Default parameters", "Seconds", "Result"], rows), width=160))
    if not args.no_cold:
        print()
        table = Table(["Classify", "Seconds", "What", "Top-1"], classify_cold_warm(device))
        print(render_table(table, width=160))
    threads = os.environ.get("OMP_NUM_THREADS", "torch's default")
    print(
        f"\n(device {device}, {os.cpu_count()} CPU cores, torch threads: {threads}, "
        f"Python {sys.version.split()[0]})"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
