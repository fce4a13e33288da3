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

from typing import Any

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


#: Step panels drawn in detail (a 4×4 output: all 16; larger grids: the first ones).
MAX_STEPS = 16
INK, PAD_FILL, CELL_FILL = "#111111", "#d9d9d9", "#ffffff"
WINDOW, WINDOW_FILL, OUT_FILL, NOW_FILL = "#d62728", "#fff2b3", "#cfe3f7", "#7fb8ea"


def _num(v: float) -> str:
    return f"{v + 0.0:g}"  # never "-0"


def _draw_grid(
    ax: Any,
    values: list[list[float]],
    *,
    x0: float = 0.0,
    y0: float = 0.0,
    fills: dict[tuple[int, int], str] | None = None,
    texts: dict[tuple[int, int], str] | None = None,
    default_fill: str = CELL_FILL,
    fontsize: float = 9,
    blank: set[tuple[int, int]] | None = None,
) -> None:
    """Cells with their numbers (row 0 at the top), black on light colours."""
    from matplotlib.patches import Rectangle

    fills, texts, blank = fills or {}, texts or {}, blank or set()
    for i, row in enumerate(values):
        for j, v in enumerate(row):
            ax.add_patch(
                Rectangle(
                    (x0 + j, y0 - i - 1), 1, 1,
                    facecolor=fills.get((i, j), default_fill), edgecolor="#888888", lw=0.8,
                )
            )  # fmt: skip
            if (i, j) in blank:
                continue
            label = texts.get((i, j), _num(v))
            size = fontsize if len(label) <= 4 else fontsize * 0.8
            ax.text(x0 + j + 0.5, y0 - i - 0.5, label, ha="center", va="center",
                    fontsize=size, color=INK)  # fmt: skip


def _padded(grid: list[list[float]], kh: int, kw: int) -> list[list[float]]:
    rows = [[0.0] * (kw - 1) + list(row) for row in grid]
    return [[0.0] * len(rows[0]) for _ in range(kh - 1)] + rows


def _products(padded: list[list[float]], kernel: list[list[float]], i: int, j: int) -> list[float]:
    return [
        padded[i + a][j + b] * kernel[a][b]
        for a in range(len(kernel))
        for b in range(len(kernel[0]))
    ]


def _sum_text(products: list[float], total: float, width: int = 48) -> str:
    """``0 + 0 + 5 + 12 + 7 = 24``, wrapped onto lines of about ``width`` characters."""
    terms = [_num(p) for p in products]
    text = " + ".join(terms) + f" = {_num(total)}"
    if len(text) <= width:
        return text
    lines, line = [], ""
    for t in terms:
        piece = (" + " if line else "") + t
        if len(line) + len(piece) > width:
            lines.append(line + " +")
            line = t
        else:
            line += piece
    lines.append(line + f" = {_num(total)}")
    return "\n".join(lines)


def _steps_png(grid: list[list[float]], kernel: list[list[float]], out: list[list[float]]) -> bytes:
    """Every step of the slide: the padded input with its numbers (padding grey), the
    filter's window on it (red, with each cell's product ``value×weight``), the sum
    written out, and the output filling in (the new value highlighted)."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt
    from matplotlib.patches import Rectangle

    kh, kw = len(kernel), len(kernel[0])
    padded = _padded(grid, kh, kw)
    rows, cols = len(out), len(out[0])
    ph, pw = len(padded), len(padded[0])
    steps = [(i, j) for i in range(rows) for j in range(cols)][:MAX_STEPS]
    per_row = 4 if len(steps) > 4 else len(steps)
    n_rows = -(-len(steps) // per_row)
    gap = 1.2
    panel_w = pw + gap + cols + 1.6  # the input, a gap, the output, a margin
    panel_h = max(ph, rows) + 3.2  # room for the title and the sum
    cell_in = 0.36
    head_h = 2.0 + kh
    total_w, total_h = per_row * panel_w + 0.6, n_rows * panel_h + head_h
    fig = plt.figure(figsize=(total_w * cell_in, total_h * cell_in), dpi=100)
    fig.patch.set_facecolor("white")
    # The header: the filter g with its numbers, and how to read a panel.
    head = fig.add_axes((0.0, 1 - head_h / total_h, 1.0, head_h / total_h))
    head.set_axis_off()
    head.set_xlim(0, total_w)
    head.set_ylim(-head_h, 0)
    head.text(0.3, -0.6, "2D convolution, step by step:  h[i,j] = Σ f_padded[i+a, j+b] · g[a,b]",
              fontsize=13, weight="bold", va="center", color=INK)  # fmt: skip
    head.text(0.3, -1.7, "filter g:", fontsize=11, va="center", color=INK)
    _draw_grid(head, kernel, x0=2.6, y0=-1.2, default_fill=WINDOW_FILL, fontsize=10)
    head.add_patch(Rectangle((2.6, -1.2 - kh), kw, kh, fill=False, edgecolor=WINDOW, lw=2.5))
    note = (
        "Each panel: the input padded with zeros (grey) above and on the left; the red "
        "window is g laid on it, each cell showing  input × weight;\nthe sum of those "
        "products is the next output value (dark blue) in h, which fills in row by row."
    )
    if len(steps) < rows * cols:
        note += (
            f"\n(The first {len(steps)} of {rows * cols} steps; the result image shows all of h.)"
        )
    head.text(3.2 + kw, -1.6, note, fontsize=9.5, va="top", color=INK)
    ax = fig.add_axes((0.0, 0.0, 1.0, n_rows * panel_h / total_h))
    ax.set_axis_off()
    ax.set_xlim(-0.3, total_w - 0.3)
    ax.set_ylim(-n_rows * panel_h, 0)
    ax.set_aspect("equal")
    filled: dict[tuple[int, int], str] = {}
    for k, (i, j) in enumerate(steps):
        x0 = (k % per_row) * panel_w
        y0 = -(k // per_row) * panel_h - 1.4
        products = _products(padded, kernel, i, j)
        fills = {(a, b): PAD_FILL for a in range(ph) for b in range(pw)
                 if a < kh - 1 or b < kw - 1}  # fmt: skip
        texts = {}
        for a in range(kh):
            for b in range(kw):
                fills[(i + a, j + b)] = WINDOW_FILL
                texts[(i + a, j + b)] = f"{_num(padded[i + a][j + b])}×{_num(kernel[a][b])}"
        _draw_grid(ax, padded, x0=x0, y0=y0, fills=fills, texts=texts, fontsize=8)
        ax.add_patch(Rectangle((x0 + j, y0 - i - kh), kw, kh, fill=False, edgecolor=WINDOW,
                               lw=2.5))  # fmt: skip
        ax.text(x0, y0 + 0.75, f"step {k + 1}: h[{i},{j}]", fontsize=10, weight="bold",
                va="center", color=INK)  # fmt: skip
        filled[(i, j)] = NOW_FILL
        out_fill = {c: (NOW_FILL if c == (i, j) else OUT_FILL) for c in filled}
        blank = {(a, b) for a in range(rows) for b in range(cols) if (a, b) not in filled}
        _draw_grid(ax, out, x0=x0 + pw + gap, y0=y0, fills=out_fill, blank=blank, fontsize=9)
        ax.text(x0 + pw + gap, y0 + 0.75, "h", fontsize=10, weight="bold", va="center",
                color=INK)  # fmt: skip
        ax.text(x0, y0 - max(ph, rows) - 0.35, _sum_text(products, out[i][j]),
                fontsize=8.5, va="top", family="monospace", color=INK)  # fmt: skip
    return figure_png(fig)


def _result_png(
    grid: list[list[float]], kernel: list[list[float]], out: list[list[float]]
) -> bytes:
    """The whole computation at a glance: padded f, the filter g, and h = g * f."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    kh, kw = len(kernel), len(kernel[0])
    padded = _padded(grid, kh, kw)
    ph, pw = len(padded), len(padded[0])
    rows, cols = len(out), len(out[0])
    width = pw + 2 + kw + 2 + cols
    height = max(ph, kh, rows) + 2
    fig, ax = plt.subplots(figsize=(width * 0.55, height * 0.55 + 0.3), dpi=100)
    ax.set_axis_off()
    ax.set_aspect("equal")
    ax.set_xlim(-0.2, width + 0.2)
    ax.set_ylim(-height + 0.5, 1.3)
    pad = {(a, b): PAD_FILL for a in range(ph) for b in range(pw) if a < kh - 1 or b < kw - 1}
    _draw_grid(ax, padded, fills=pad, fontsize=10)
    ax.text(pw / 2, 0.6, "f, padded with zeros", ha="center", fontsize=10, color=INK)
    ax.text(pw + 1, -ph / 2, "*", ha="center", va="center", fontsize=20, color=INK)
    _draw_grid(ax, kernel, x0=pw + 2, default_fill=WINDOW_FILL, fontsize=10)
    ax.text(pw + 2 + kw / 2, 0.6, "filter g", ha="center", fontsize=10, color=INK)
    ax.text(pw + 3 + kw, -ph / 2, "=", ha="center", va="center", fontsize=20, color=INK)
    _draw_grid(ax, out, x0=pw + 4 + kw, default_fill=OUT_FILL, fontsize=10)
    ax.text(pw + 4 + kw + cols / 2, 0.6, "h = g * f", ha="center", fontsize=10, color=INK)
    fig.tight_layout()
    return figure_png(fig)


def run(params: BaseModel, device: str, progress: Progress) -> DemoResult:
    assert isinstance(params, Conv2dParams)
    progress(0.1, "convolving")
    out = convolve(params.grid, params.kernel, device)
    progress(0.5, "drawing the steps")
    images = [("conv2d-steps.png", _steps_png(params.grid, params.kernel, out))]
    images.append(("conv2d-result.png", _result_png(params.grid, params.kernel, out)))
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
    typical_s=1.0,
)
