"""The demo catalogue: small, documented jobs a student can run on the course's GPU
(or the CPU, in CI). Each demo declares its parameters (a pydantic model), a hard
wall-clock timeout, and ``run(params, device, progress) -> DemoResult``.

Torch is imported only inside this package (and only when a demo runs)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from pydantic import BaseModel


class DemoError(Exception):
    """Bad parameters or a failed run; ``str()`` is what the student reads."""


@dataclass
class DemoResult:
    text: str
    images: list[tuple[str, bytes]] = field(default_factory=list)  # (file name, PNG)


Progress = Callable[[float, str], None]  # (fraction done 0..1, what is happening)


@dataclass(frozen=True)
class Demo:
    name: str
    description: str
    params: type[BaseModel]
    run: Callable[[BaseModel, str, Progress], DemoResult]
    timeout_s: float
    #: A typical run in a warm worker, in seconds: the queue's estimate until the demo
    #: has measured run times of its own (``gpu_queue.queue.run_times``).
    typical_s: float = 5.0
    #: The largest GPU memory a run may need, in MiB, for the given parameters (None:
    #: small); checked at submission against the limit the instructor set.
    memory_mib: Callable[[BaseModel], float] | None = None


def catalogue() -> dict[str, Demo]:
    from gpu_queue.demos import classify, cnn, conv2d, train, video

    return {d.name: d for d in (conv2d.DEMO, cnn.DEMO, train.DEMO, video.DEMO, classify.DEMO)}


def pick_device(prefer: str = "auto") -> str:
    import torch

    if prefer == "cpu":
        return "cpu"
    return "cuda" if torch.cuda.is_available() else "cpu"


def figure_png(fig: object) -> bytes:
    """A matplotlib figure as PNG bytes (closing it)."""
    import io

    from matplotlib import pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png")  # type: ignore[attr-defined]
    plt.close(fig)  # type: ignore[arg-type]
    return buf.getvalue()
