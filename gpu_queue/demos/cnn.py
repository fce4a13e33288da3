"""``cnn``: the lecture's small convolutional network on an 80×120 grayscale image.

    input 80×120×1
    → 3×3 convolution to 4 channels (padding 1) + ReLU   80×120×4
    → 2×2 max pooling                                    40×60×4
    → 3×3 convolution to 2 channels (padding 1) + ReLU   40×60×2
    → flatten                                            4800
    → fully connected to C classes, softmax              C probabilities

**Readable filters.** With ``filters=edges`` (the default) the first layer's four 3×3
filters are the classic Sobel edge detectors, one per direction of change (dark to
bright left→right, bright to dark left→right, dark to bright top→bottom, bright to dark
top→bottom), so after the ReLU each feature map lights up exactly where the image has
such an edge; the second layer adds and smooths them into "vertical edges" and
"horizontal edges". ``filters=random`` uses seeded random filters instead, to compare.
The fully connected layer's weights are random (``seed``; nothing is downloaded or
trained), so the probabilities show the mechanics of flatten → FC → softmax, not a
trained model's judgement; the ``train`` demo trains a CNN for real.

The image is an attachment (any format Pillow reads, converted to grayscale and resized
to 120×80) or the bundled sample, a synthetic frame drawn in code. Pictures: the whole
pipeline to scale with every shape, the filters with their numbers, the feature maps of
each stage, pooling with a worked 4×4 → 2×2 example, and flatten → FC → softmax.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field

from gpu_queue.demos import Demo, DemoError, DemoResult, Progress, figure_png

HEIGHT, WIDTH = 80, 120
MAX_IMAGE_BYTES = 10 * 1024 * 1024


class CnnParams(BaseModel):
    classes: int = Field(5, ge=2, le=20, description="number of classes C")
    seed: int = Field(0, ge=0, description="seed of the random weights")
    filters: Literal["edges", "random"] = Field(
        "edges", description="first-layer filters: `edges` (Sobel) or `random` (seeded)"
    )
    image: str | None = Field(
        None, description="path of the image (an attachment); default: the sample"
    )


def sample_image() -> list[list[float]]:
    """A synthetic 80×120 frame: a bright disc, a bar and a gradient (values 0..1)."""
    import math

    img = []
    for y in range(HEIGHT):
        row = []
        for x in range(WIDTH):
            v = 0.15 + 0.35 * x / WIDTH
            if (x - 40) ** 2 + (y - 38) ** 2 < 18**2:
                v = 0.95
            if 78 < x < 100 and 15 < y < 70:
                v = 0.6 + 0.2 * math.sin(y / 4)
            row.append(v)
        img.append(row)
    return img


def load_image(path: str) -> list[list[float]]:
    from PIL import UnidentifiedImageError

    from gpu_queue.demos.images import open_image

    p = Path(path)
    if not p.is_file():
        raise DemoError(f"The image {p.name} could not be found.")
    if p.stat().st_size > MAX_IMAGE_BYTES:
        raise DemoError("The image is larger than 10 MB; send a smaller one.")
    try:
        with open_image(p) as im:  # its pixel count checked before anything is decoded
            gray = im.convert("L").resize((WIDTH, HEIGHT))
            data = gray.tobytes()  # one byte per pixel, row by row
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError):
        raise DemoError(f"{p.name} is not an image Pillow can read (try PNG or JPEG).") from None
    return [[data[y * WIDTH + x] / 255.0 for x in range(WIDTH)] for y in range(HEIGHT)]


#: The first layer's filters (``filters=edges``): Sobel, one per direction of change.
SOBEL_X = [[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]]
SOBEL_Y = [[-1.0, -2.0, -1.0], [0.0, 0.0, 0.0], [1.0, 2.0, 1.0]]
EDGE_FILTERS = [
    ("dark → bright, left to right", SOBEL_X),
    ("bright → dark, left to right", [[-v for v in r] for r in SOBEL_X]),
    ("dark → bright, top to bottom", SOBEL_Y),
    ("bright → dark, top to bottom", [[-v for v in r] for r in SOBEL_Y]),
]
SMOOTH = [[1 / 16, 2 / 16, 1 / 16], [2 / 16, 4 / 16, 2 / 16], [1 / 16, 2 / 16, 1 / 16]]
#: The second layer (``filters=edges``): each output channel adds two of the first
#: layer's maps, smoothed.
CONV2_NAMES = ("vertical edges (channels 1 + 2)", "horizontal edges (channels 3 + 4)")


def build(classes: int, seed: int, filters: str = "edges"):  # type: ignore[no-untyped-def]
    """The network; with ``filters=edges`` its convolutions are the readable filters
    above (the FC layer is seeded random either way)."""
    model = _build(classes, seed)
    if filters == "edges":
        import torch

        with torch.no_grad():
            model.conv1.weight.copy_(torch.tensor([[f] for _, f in EDGE_FILTERS]))
            model.conv1.bias.zero_()
            w = torch.zeros(2, 4, 3, 3)
            for out_ch, ins in ((0, (0, 1)), (1, (2, 3))):
                for c in ins:
                    w[out_ch, c] = torch.tensor(SMOOTH)
            model.conv2.weight.copy_(w)
            model.conv2.bias.zero_()
    return model


def _build(classes: int, seed: int):  # type: ignore[no-untyped-def]
    import torch
    from torch import nn

    torch.manual_seed(seed)

    class LectureCNN(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv1 = nn.Conv2d(1, 4, 3, padding=1)
            self.pool = nn.MaxPool2d(2)
            self.conv2 = nn.Conv2d(4, 2, 3, padding=1)
            self.fc = nn.Linear(40 * 60 * 2, classes)

        def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
            c1 = torch.relu(self.conv1(x))
            p1 = self.pool(c1)
            c2 = torch.relu(self.conv2(p1))
            flat = c2.flatten(1)
            probs = torch.softmax(self.fc(flat), dim=1)
            return {"conv1": c1, "pool": p1, "conv2": c2, "flat": flat, "probs": probs}

    return LectureCNN()


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    return plt


def _shape(*dims: int) -> str:
    return "×".join(str(d) for d in dims)


def _stack(ax: Any, maps: list[Any], x0: float, height: float, step: float) -> float:
    """Draw feature maps as a staggered stack at 1 unit = 1 pixel (centred on y=0);
    the x where the stack ends."""
    h, w = len(maps[0]), len(maps[0][0])
    n = len(maps)
    top = (h + step * (n - 1)) / 2
    for k, m in enumerate(maps):
        x = x0 + step * k
        y = top - step * k
        ax.imshow(m, cmap="gray", extent=(x, x + w, y - h, y), zorder=2 + k,
                  vmin=0, vmax=max(1e-6, max(max(r) for r in m)))  # fmt: skip
        ax.add_patch(_rect(x, y - h, w, h, zorder=2 + k))
    del height
    return x0 + step * (n - 1) + w


def _rect(x: float, y: float, w: float, h: float, **kw: Any) -> Any:
    from matplotlib.patches import Rectangle

    return Rectangle((x, y), w, h, fill=False, edgecolor="#333333", lw=1.0, **kw)


def _pipeline_png(
    image: list[list[float]], out: dict[str, Any], probs: list[float], filters: str
) -> bytes:
    """Every stage to scale (1 pixel = 1 unit, so pooling visibly halves), with its
    shape, the operation between stages, and the class probabilities."""
    plt = _plt()
    c1, p1, c2 = (out[k][0].cpu().tolist() for k in ("conv1", "pool", "conv2"))
    flat = out["flat"][0].cpu().tolist()
    classes = len(probs)
    fig, ax = plt.subplots(figsize=(15, 4.6), dpi=100)
    ax.set_axis_off()
    ax.set_aspect("equal")
    ink = "#111111"
    stages = []
    x = 0.0
    ax.imshow(image, cmap="gray", vmin=0, vmax=1, extent=(x, x + WIDTH, -HEIGHT / 2, HEIGHT / 2))
    ax.add_patch(_rect(x, -HEIGHT / 2, WIDTH, HEIGHT))
    stages.append((x, x + WIDTH, "input", _shape(HEIGHT, WIDTH, 1)))
    x += WIDTH + 55
    end = _stack(ax, c1, x, HEIGHT, 12)
    stages.append((x, end, "conv1 + ReLU", _shape(HEIGHT, WIDTH, 4)))
    x = end + 55
    end = _stack(ax, p1, x, HEIGHT / 2, 8)
    stages.append((x, end, "2×2 max pool", _shape(HEIGHT // 2, WIDTH // 2, 4)))
    x = end + 55
    end = _stack(ax, c2, x, HEIGHT / 2, 8)
    stages.append((x, end, "conv2 + ReLU", _shape(HEIGHT // 2, WIDTH // 2, 2)))
    x = end + 55
    # The flattened vector: 4800 values, drawn as a column (every 40th value).
    strip = [[v] for v in flat[:: max(1, len(flat) // 120)]]
    ax.imshow(strip, cmap="gray", aspect="auto", extent=(x, x + 8, -60, 60),
              vmin=0, vmax=max(1e-6, max(flat)))  # fmt: skip
    ax.add_patch(_rect(x, -60, 8, 120))
    stages.append((x - 10, x + 18, "flatten", str(len(flat))))
    x += 8 + 65
    # FC + softmax: the C probabilities as bars (length 100 = probability 1).
    bar_h = min(22.0, 120 / classes)
    top = bar_h * classes / 2
    best = max(range(classes), key=lambda k: probs[k])
    for k, p in enumerate(probs):
        y = top - bar_h * (k + 1)
        ax.add_patch(_rect(x, y + 2, 100, bar_h - 4))
        ax.fill_between([x, x + 100 * p], y + 2, y + bar_h - 2,
                        color="#2a7ab9" if k == best else "#9ecae1")  # fmt: skip
        ax.plot([x - 55 + 8, x], [0, y + bar_h / 2], color="#bbbbbb", lw=0.6, zorder=0)
        ax.text(x + 104, y + bar_h / 2, f"class {k + 1}: {p:.2f}", va="center", fontsize=8,
                color=ink)  # fmt: skip
    stages.append((x, x + 100, "FC + softmax", str(classes)))
    ops = ["3×3 conv, 4 filters", "2×2 max pool", "3×3 conv, 2 filters", "flatten", "FC, softmax"]
    for (a0, a1, title, shape), nxt, op in zip(stages, stages[1:], ops, strict=False):
        del a0
        ax.annotate("", xy=(nxt[0] - 6, 0), xytext=(a1 + 6, 0),
                    arrowprops={"arrowstyle": "->", "color": "#d62728", "lw": 1.8})  # fmt: skip
        ax.text((a1 + nxt[0]) / 2, 8, op, ha="center", va="bottom", fontsize=8,
                color="#d62728", rotation=90)  # fmt: skip
        del title, shape
    for a0, a1, title, shape in stages:
        ax.text((a0 + a1) / 2, 78, title, ha="center", fontsize=10, color=ink)
        ax.text((a0 + a1) / 2, -82, shape, ha="center", va="top", fontsize=12,
                weight="bold", color=ink)  # fmt: skip
    ax.set_xlim(-5, x + 170)
    ax.set_ylim(-100, 95)
    what = "Sobel edge filters" if filters == "edges" else "random filters"
    ax.set_title(
        f"The lecture's CNN, every stage to scale ({what}; FC weights random: untrained)",
        fontsize=12, color=ink,
    )  # fmt: skip
    fig.tight_layout()
    return figure_png(fig)


def _kernel(ax: Any, k: list[list[float]], title: str) -> None:
    from matplotlib.patches import Rectangle

    ax.set_axis_off()
    ax.set_aspect("equal")
    ax.set_xlim(0, 3)
    ax.set_ylim(-3, 0)
    top = max(1e-6, max(abs(v) for r in k for v in r))
    for i, row in enumerate(k):
        for j, v in enumerate(row):
            t = abs(v) / top
            color = (1 - 0.45 * t, 1 - 0.3 * t, 1) if v < 0 else (1, 1 - 0.3 * t, 1 - 0.45 * t)
            ax.add_patch(Rectangle((j, -i - 1), 1, 1, facecolor=color, edgecolor="#777777"))
            ax.text(j + 0.5, -i - 0.5, f"{v + 0.0:.2g}", ha="center", va="center",
                    fontsize=12, color="#111111")  # fmt: skip
    ax.set_title(title, fontsize=9, color="#111111")


def _filters_png(model: Any, names: list[str]) -> bytes:
    plt = _plt()
    w = model.conv1.weight.detach().cpu()[:, 0].tolist()
    fig, axes = plt.subplots(1, 4, figsize=(11, 3.3), dpi=100)
    for ax, k, name in zip(axes, w, names, strict=True):
        _kernel(ax, k, name)
    fig.suptitle("conv1's four 3×3 filters (red: positive weights, blue: negative)",
                 fontsize=11)  # fmt: skip
    fig.tight_layout()
    return figure_png(fig)


def _maps_png(title: str, maps: list[list[list[float]]], names: list[str]) -> bytes:
    plt = _plt()
    n = len(maps)
    h, w = len(maps[0]), len(maps[0][0])
    scale = 2.4 / HEIGHT  # inches per pixel: maps of one size look the same everywhere
    fig, axes = plt.subplots(1, n, figsize=(max(6.0, n * (w * scale + 0.4)), h * scale + 1.2),
                             dpi=100, squeeze=False)  # fmt: skip
    for ax, m, name in zip(axes[0], maps, names, strict=True):
        ax.imshow(m, cmap="gray", vmin=0, vmax=max(1e-6, max(max(r) for r in m)))
        ax.set_title(name, fontsize=8.5)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    return figure_png(fig)


def _pool_png(c1: list[list[list[float]]], p1: list[list[list[float]]]) -> bytes:
    """Before and after pooling at the same scale (the maps halve), and a worked 4×4 →
    2×2 example from the busiest corner of channel 1, with its numbers."""
    plt = _plt()
    from matplotlib.patches import Rectangle

    fig = plt.figure(figsize=(13, 4.4), dpi=100)
    gs = fig.add_gridspec(1, 3, width_ratios=[WIDTH, WIDTH / 2, 150])
    ax = fig.add_subplot(gs[0])
    ax.imshow(c1[0], cmap="gray", extent=(0, WIDTH, 0, HEIGHT),
              vmin=0, vmax=max(1e-6, max(max(r) for r in c1[0])))  # fmt: skip
    ax.set_title(f"channel 1 before: {_shape(HEIGHT, WIDTH)}", fontsize=10)
    ax.set_xlim(0, WIDTH)
    ax.set_ylim(0, HEIGHT)
    ax2 = fig.add_subplot(gs[1])
    ax2.imshow(p1[0], cmap="gray", extent=(0, WIDTH / 2, HEIGHT / 2, HEIGHT),
               vmin=0, vmax=max(1e-6, max(max(r) for r in p1[0])))  # fmt: skip
    ax2.set_xlim(0, WIDTH / 2)
    ax2.set_ylim(0, HEIGHT)
    ax2.set_title(f"after 2×2 max pool: {_shape(HEIGHT // 2, WIDTH // 2)}", fontsize=10)
    for a in (ax, ax2):
        a.set_xticks([])
        a.set_yticks([])
        a.set_aspect("equal")
    ax2.axis("off")
    ax2.add_patch(Rectangle((0, HEIGHT / 2), WIDTH / 2, HEIGHT / 2, fill=False,
                            edgecolor="#333333"))  # fmt: skip
    # The worked example: the 4×4 block (aligned to 2) with the largest sum.
    best, at = -1.0, (0, 0)
    for i in range(0, HEIGHT - 3, 2):
        for j in range(0, WIDTH - 3, 2):
            s = sum(c1[0][i + a][j + b] for a in range(4) for b in range(4))
            if s > best:
                best, at = s, (i, j)
    i0, j0 = at
    ax.add_patch(Rectangle((j0, HEIGHT - i0 - 4), 4, 4, fill=False, edgecolor="#d62728", lw=2))
    ax2.add_patch(Rectangle((j0 / 2, HEIGHT - i0 / 2 - 2), 2, 2, fill=False,
                            edgecolor="#d62728", lw=2))  # fmt: skip
    ax3 = fig.add_subplot(gs[2])
    ax3.set_axis_off()
    ax3.set_aspect("equal")
    ax3.set_xlim(-0.2, 7.4)
    ax3.set_ylim(-5.2, 0.9)
    colors = ["#fde0dd", "#deebf7", "#e5f5e0", "#fff2b3"]
    for a in range(4):
        for b in range(4):
            quad = (a // 2) * 2 + b // 2
            v = c1[0][i0 + a][j0 + b]
            ax3.add_patch(Rectangle((b, -a - 1), 1, 1, facecolor=colors[quad], edgecolor="#777"))
            ax3.text(b + 0.5, -a - 0.5, f"{v:.1f}", ha="center", va="center", fontsize=10)
    for a in range(2):
        for b in range(2):
            v = p1[0][i0 // 2 + a][j0 // 2 + b]
            ax3.add_patch(Rectangle((5 + b, -a - 2), 1, 1, facecolor=colors[a * 2 + b],
                                    edgecolor="#777"))  # fmt: skip
            ax3.text(5.5 + b, -a - 1.5, f"{v:.1f}", ha="center", va="center", fontsize=10,
                     weight="bold")  # fmt: skip
    ax3.annotate("", xy=(4.9, -2), xytext=(4.1, -2), arrowprops={"arrowstyle": "->"})
    ax3.text(3.6, 0.45, "each 2×2 block → its largest value", ha="center", fontsize=10)
    ax3.text(3.6, -4.7, f"(channel 1, rows {i0}–{i0 + 3}, columns {j0}–{j0 + 3}: red box)",
             ha="center", fontsize=8.5)  # fmt: skip
    fig.suptitle("2×2 max pooling halves each map: 80×120×4 → 40×60×4", fontsize=12)
    fig.tight_layout()
    return figure_png(fig)


def _fc_png(flat: list[float], weight: list[list[float]], logits: list[float],
            probs: list[float]) -> bytes:  # fmt: skip
    """flatten → FC → softmax: the 4800 values, the C×4800 weights, each class's score
    z = w·x + b, and the probabilities e^z / Σ e^z."""
    plt = _plt()
    classes = len(probs)
    fig = plt.figure(figsize=(14, 3.9), dpi=100)
    gs = fig.add_gridspec(2, 3, height_ratios=[1, 3], width_ratios=[3.2, 1, 1.3])
    ax = fig.add_subplot(gs[0, 0])
    ax.imshow([flat], aspect="auto", cmap="gray", vmin=0, vmax=max(1e-6, max(flat)))
    ax.set_yticks([])
    ax.set_xticks([0, 2399, 4799], ["1", "2400", "4800"])
    ax.set_title(f"flatten: the 40×60×2 maps as one vector x of {len(flat)} values", fontsize=10)
    ax = fig.add_subplot(gs[1, 0])
    top = max(1e-6, max(abs(v) for r in weight for v in r))
    ax.imshow(weight, aspect="auto", cmap="RdBu_r", vmin=-top, vmax=top, interpolation="nearest")
    ax.set_yticks(range(classes), [f"w{k + 1}" for k in range(classes)])
    ax.set_xticks([0, 2399, 4799], ["1", "2400", "4800"])
    ax.set_title(f"FC weights: {classes} rows of {len(flat)} (random, seeded)", fontsize=10)
    ax = fig.add_subplot(gs[:, 1])
    ax.barh(range(classes), logits, color="#999999")
    ax.invert_yaxis()
    ax.set_yticks(range(classes), [f"class {k + 1}" for k in range(classes)])
    ax.axvline(0, color="#333333", lw=0.8)
    for k, z in enumerate(logits):
        ax.text(z, k, f" {z:.2f} ", va="center", ha="left" if z >= 0 else "right", fontsize=8)
    ax.set_title("scores z = w·x + b", fontsize=10)
    ax.margins(x=0.35)
    ax = fig.add_subplot(gs[:, 2])
    best = max(range(classes), key=lambda k: probs[k])
    ax.barh(range(classes), probs,
            color=["#2a7ab9" if k == best else "#9ecae1" for k in range(classes)])  # fmt: skip
    ax.invert_yaxis()
    ax.set_yticks(range(classes), [f"class {k + 1}" for k in range(classes)])
    ax.set_xlim(0, 1.15)
    for k, p in enumerate(probs):
        ax.text(p + 0.02, k, f"{p:.3f}", va="center", fontsize=8)
    ax.set_title("softmax: p = e^z / Σ e^z  (sum 1)", fontsize=10)
    fig.tight_layout()
    return figure_png(fig)


def run(params: BaseModel, device: str, progress: Progress) -> DemoResult:
    import torch

    assert isinstance(params, CnnParams)
    progress(0.05, "loading the image")
    image = load_image(params.image) if params.image else sample_image()
    model = build(params.classes, params.seed, params.filters).to(device).eval()
    x = torch.tensor(image, dtype=torch.float32, device=device)[None, None]
    progress(0.3, "running the network")
    with torch.no_grad():
        out = model(x)
        logits = model.fc(out["flat"])[0].cpu().tolist()
    shapes = {k: tuple(v.shape[1:]) for k, v in out.items()}
    probs = out["probs"][0].cpu().tolist()
    edges = params.filters == "edges"
    names1 = (
        [f"channel {k + 1}: {name}" for k, (name, _) in enumerate(EDGE_FILTERS)]
        if edges
        else [f"channel {k + 1} (random filter)" for k in range(4)]
    )
    names2 = (
        [f"channel {k + 1}: {n}" for k, n in enumerate(CONV2_NAMES)]
        if edges
        else ["channel 1", "channel 2"]
    )
    progress(0.6, "drawing the stages")
    c1, p1, c2 = (out[k][0].cpu().tolist() for k in ("conv1", "pool", "conv2"))
    images = [
        ("cnn-pipeline.png", _pipeline_png(image, out, probs, params.filters)),
        ("cnn-filters.png", _filters_png(model, names1)),
        ("cnn-conv1.png", _maps_png("after conv1 (3×3, 4 filters) + ReLU: 80×120×4", c1, names1)),
        ("cnn-pool.png", _pool_png(c1, p1)),
        ("cnn-conv2.png", _maps_png("after conv2 (3×3, 2 filters) + ReLU: 40×60×2", c2, names2)),
        (
            "cnn-fc-softmax.png",
            _fc_png(
                out["flat"][0].cpu().tolist(),
                model.fc.weight.detach().cpu().tolist(),
                logits,
                probs,
            ),
        ),
    ]
    progress(1.0, "done")
    flow = " → ".join(
        [_shape(HEIGHT, WIDTH, 1), _shape(HEIGHT, WIDTH, 4), _shape(HEIGHT // 2, WIDTH // 2, 4),
         _shape(HEIGHT // 2, WIDTH // 2, 2), str(shapes["flat"][0]), str(params.classes)]
    )  # fmt: skip
    what = (
        "conv1's filters are Sobel edge detectors, conv2 adds them into vertical and "
        "horizontal edges"
        if edges
        else f"random filters (seed {params.seed})"
    )
    lines = [
        f"Shapes: {flow}",
        f"conv1 {shapes['conv1']}, pool {shapes['pool']}, conv2 {shapes['conv2']}, "
        f"flatten {shapes['flat'][0]}, softmax over {params.classes} classes:",
        *(f"  class {i + 1}: {p:.3f}" for i, p in enumerate(probs)),
        f"({what}; the FC layer is random and untrained (seed {params.seed}), so the "
        f"probabilities show how softmax works, not what the image is; computed on {device})",
    ]
    return DemoResult(text="\n".join(lines), images=images)


DEMO = Demo(
    name="cnn",
    description="The lecture's CNN on an 80×120 grayscale image, with every stage's feature maps",
    params=CnnParams,
    run=run,
    timeout_s=120,
    typical_s=3.0,
)
