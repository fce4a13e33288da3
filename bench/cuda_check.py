"""A one-shot check of the GPU path on a machine with CUDA (not part of the test suite,
which runs on CPUs): every demo through the worker child's own ``run_demo`` on
``cuda``, the lecture's conv2d numbers, a real CUDA out-of-memory error turned into the
student's message with the memory given back, and a warm vs cold ``classify``.

    python -m bench.cuda_check            # prints a table; exits 1 if a check failed
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
from typing import Any

from commands.replies import Table, render_table

#: The lecture's result for its worked example, row by row.
LECTURE = [1, 4, 8, 12, 5, 16, 24, 28, 10, 32, 48, 56, 18, 56, 80, 88]
#: Small parameters so the whole check takes seconds.
PARAMS: dict[str, dict[str, Any]] = {
    "conv2d": {},
    "cnn": {"classes": 5},
    "train": {"epochs": 5},
    "video": {"clips": 400, "epochs": 5},
    "classify": {"sample": "chelsea"},
}


def _numbers(text: str) -> list[int]:
    """The 16 numbers of conv2d's result (printed after ``h = g * f =``)."""
    after = text.split("=", 2)[-1]
    return [int(n) for n in re.findall(r"-?\d+", after)][:16]


def main() -> int:
    import torch

    from gpu_queue.demos import Demo, DemoResult, catalogue
    from gpu_queue.worker import OOM_MESSAGE, run_demo

    if not torch.cuda.is_available():
        print("no CUDA device: nothing to check")
        return 1
    print(f"{torch.cuda.get_device_name(0)}; torch {torch.__version__}")
    rows: list[list[str]] = []
    failed = 0
    demos = catalogue()
    for name, params in PARAMS.items():
        start = time.perf_counter()
        kind, text, images = run_demo(demos[name], params, "cuda", lambda f, w: None)
        took = time.perf_counter() - start
        ok = kind == "ok" and (name != "conv2d" or _numbers(str(text)) == LECTURE)
        failed += not ok
        first = str(text).splitlines()[-1][:70] if text else ""
        rows.append(
            [name, kind, f"{took:.2f}", str(len(images or [])), "yes" if ok else "NO", first]
        )

    def greedy(params: Any, device: str, progress: Any) -> DemoResult:
        blocks = [torch.empty(2**40, dtype=torch.uint8, device=device) for _ in range(1024)]
        return DemoResult(f"allocated {len(blocks)} TiB?")

    cnn = demos["cnn"]
    before = torch.cuda.memory_allocated()
    kind, text, _ = run_demo(
        Demo("cnn", cnn.description, cnn.params, greedy, cnn.timeout_s),
        {},
        "cuda",
        lambda f, w: None,
    )
    torch.cuda.empty_cache()
    ok = kind == "fail" and text == OOM_MESSAGE.format(demo="cnn")
    ok = ok and torch.cuda.memory_allocated() == before
    failed += not ok
    rows.append(["out of memory", kind, "", "", "yes" if ok else "NO", str(text)[:70]])

    # Warm vs cold classify on CUDA: a fresh interpreter per cold run.
    code = (
        "import time;t=time.perf_counter();"
        "from gpu_queue.demos import catalogue;d=catalogue()['classify'];"
        "d.run(d.params.model_validate({'sample':'chelsea'}),'cuda',lambda f,w:None);"
        "print(time.perf_counter()-t)"
    )
    cold = [float(subprocess.check_output([sys.executable, "-c", code]).decode()) for _ in range(2)]
    warm = []
    for _ in range(5):
        start = time.perf_counter()
        run_demo(demos["classify"], {"sample": "chelsea"}, "cuda", lambda f, w: None)
        warm.append(time.perf_counter() - start)
    speed = min(cold) / sorted(warm)[2]
    ok = speed >= 5
    failed += not ok
    rows.append(
        [
            "classify warm/cold",
            "ok",
            f"{sorted(warm)[2]:.3f} / {min(cold):.2f}",
            "",
            "yes" if ok else "NO",
            f"warm {speed:.0f}× faster (target ≥ 5×)",
        ]
    )
    print(render_table(Table(["check", "outcome", "seconds", "images", "passed", "says"], rows)))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
