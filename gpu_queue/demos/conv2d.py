"""``conv2d``: the lecture's worked 2D convolution, step by step.

The lecture convolves ``f`` (the 4×4 grid 1..16) with ``g = [[1,2,1],[0,0,0],[1,2,1]]``.
It pads ``f`` with two rows of zeros above and two columns on the left (a 6×6 grid),
slides ``g`` over it, and reads off, at each of the 16 positions, the sum of the
elementwise products::

    h = [[ 1,  4,  8, 12],
         [ 5, 16, 24, 28],
         [10, 32, 48, 56],
         [18, 56, 80, 88]]

(``g`` is symmetric, so flipped or not — convolution or cross-correlation — gives the
same numbers.) A student can pass any small grid and kernel instead; the padding is
then ``kernel size − 1`` above and to the left, as in the lecture, so the output has the
grid's size. The result is computed with ``torch.nn.functional.conv2d`` on the chosen
device, and a picture of every step is drawn.
"""

from __future__ import annotations

from pydantic import BaseModel, Field, field_validator

from gpu_queue.demos import Demo, DemoError, DemoResult, Progress, figure_png

LECTURE_F = [[1, 2, 3, 4], [5, 6, 7, 8], [9, 10, 11, 12], [13, 14, 15, 16]]
LECTURE_G = [[1, 2, 1], [0, 0, 0], [1, 2, 1]]
LECTURE_H = [[1, 4, 8, 12], [5, 16, 24, 28], [10, 32, 48, 56], [18, 56, 80, 88]]
MAX_SIDE = 12


def _grid(text: str | list[list[float]]) -> list[list[float]]:
    """``"1 2 3; 4 5 6"`` (rows separated by ``;``) or a list of rows."""
    if isinstance(text, list):
        rows = text
    else:
        try:
            rows = [[float(x) for x in row.replace(",", " ").split()] for row in text.split(";")]
        except ValueError:
            raise ValueError("use numbers, rows separated by `;`, e.g. `1 2; 3 4`") from None
    if not rows or not rows[0] or any(len(r) != len(rows[0]) for r in rows):
        raise ValueError("every row needs the same number of values, e.g. `1 2; 3 4`")
    if len(rows) > MAX_SIDE or len(rows[0]) > MAX_SIDE:
        raise ValueError(f"at most {MAX_SIDE}×{MAX_SIDE} values")
    return [[float(x) for x in r] for r in rows]


class Conv2dParams(BaseModel):
    grid: list[list[float]] = Field(
        default_factory=lambda: [list(map(float, r)) for r in LECTURE_F],
        description="the input grid, rows separated by `;` (default: the lecture's 1..16)",
    )
    kernel: list[list[float]] = Field(
        default_factory=lambda: [list(map(float, r)) for r in LECTURE_G],
        description="the filter, rows separated by `;` (default: [[1,2,1],[0,0,0],[1,2,1]])",
    )

    @field_validator("grid", "kernel", mode="before")
    @classmethod
    def _parse(cls, v: object) -> object:
        return _grid(v) if isinstance(v, str | list) else v


def convolve(
    grid: list[list[float]], kernel: list[list[float]], device: str = "cpu"
) -> list[list[float]]:
    """The lecture's convolution: zero padding above and left, then slide the kernel."""
    import torch
    import torch.nn.functional as F

    kh, kw = len(kernel), len(kernel[0])
    if kh > len(grid) + kh - 1 or kw > len(grid[0]) + kw - 1:
        raise DemoError("the kernel is larger than the padded grid")
    x = torch.tensor(grid, dtype=torch.float64, device=device)[None, None]
    w = torch.tensor(kernel, dtype=torch.float64, device=device)[None, None]
    x = F.pad(x, (kw - 1, 0, kh - 1, 0))
    return F.conv2d(x, w)[0, 0].cpu().tolist()


def _steps_png(grid: list[list[float]], kernel: list[list[float]], out: list[list[float]]) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt
    from matplotlib.patches import Rectangle

    kh, kw = len(kernel), len(kernel[0])
    padded = [[0.0] * (kw - 1) + row for row in grid]
    padded = [[0.0] * len(padded[0]) for _ in range(kh - 1)] + padded
    rows, cols = len(out), len(out[0])
    fig, axes = plt.subplots(rows, cols, figsize=(2.0 * cols, 2.0 * rows), dpi=70, squeeze=False)
    for i in range(rows):
        for j in range(cols):
            ax = axes[i][j]
            ax.imshow(padded, cmap="Blues", vmin=min(map(min, padded)), vmax=max(map(max, padded)))
            ax.add_patch(Rectangle((j - 0.5, i - 0.5), kw, kh, fill=False, edgecolor="red", lw=2))
            ax.set_title(f"h[{i},{j}] = {out[i][j]:g}", fontsize=9)
            ax.set_xticks([])
            ax.set_yticks([])
    fig.suptitle("2D convolution, step by step (red: the filter's window)")
    fig.tight_layout()
    return figure_png(fig)


def _result_png(out: list[list[float]]) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    fig, ax = plt.subplots(figsize=(3.2, 3.2), dpi=100)
    ax.imshow(out, cmap="viridis")
    for i, row in enumerate(out):
        for j, v in enumerate(row):
            ax.text(j, i, f"{v:g}", ha="center", va="center", color="white", fontsize=10)
    ax.set_title("h = g * f")
    ax.set_xticks([])
    ax.set_yticks([])
    fig.tight_layout()
    return figure_png(fig)


def run(params: BaseModel, device: str, progress: Progress) -> DemoResult:
    assert isinstance(params, Conv2dParams)
    progress(0.1, "convolving")
    out = convolve(params.grid, params.kernel, device)
    progress(0.5, "drawing the steps")
    images = [("conv2d-steps.png", _steps_png(params.grid, params.kernel, out))]
    images.append(("conv2d-result.png", _result_png(out)))
    progress(1.0, "done")
    lines = ["h = g * f =", *("  " + "  ".join(f"{v:g}" for v in row) for row in out)]
    if params.grid == [list(map(float, r)) for r in LECTURE_F] and params.kernel == [
        list(map(float, r)) for r in LECTURE_G
    ]:
        lines.append("This is the lecture's example, and it matches the slides.")
    return DemoResult(text="\n".join(lines) + f"\n(computed on {device})", images=images)


DEMO = Demo(
    name="conv2d",
    description="The lecture's 2D convolution, step by step (or your own grid and kernel)",
    params=Conv2dParams,
    run=run,
    timeout_s=60,
)
