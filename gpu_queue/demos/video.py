"""``video``: the lecture's closing question — how do we apply CNNs to video?

The data is generated here, offline: short grayscale clips (8 frames of 32×32) in which
one shape (a square, a disc, a cross or a ring, of random size and brightness, over a
little noise) slides across the frame. The label is the direction of the motion:
**left, right, up or down**. Starting points are drawn so that every class fills the
frame evenly — a clip moving right, played backwards, is a perfectly ordinary clip
moving left. So no single frame tells the class; only the *order* of the frames does.

Two networks of about the same size are trained on the same clips, with the same
optimiser and epochs:

* **2D, frame by frame** ("late fusion" by averaging): a 2D CNN (3×3 conv with stride
  2 → 3×3 conv, each with batch norm and ReLU → global average pool) is applied to every
  frame on its own, the frame features are averaged over time, and a linear layer classifies the
  average. Averaging forgets the order of the frames, so it cannot tell left from
  right (nor, since pooling is over space too, horizontal from vertical): it stays
  near chance (25%; about 30% after 30 epochs on 4000 clips, from border effects)
  however long it trains.
* **3D**: the same layers with 3×3×3 kernels (``Conv3d``) that slide over time as well
  as space, so a filter can respond to "bright here, then bright one pixel to the right".
  It learns the task.

``mode=2plus1d`` swaps the 3D network for a (2+1)D one (a 1×3×3 spatial convolution
followed by a 3×1×1 temporal one, as in R(2+1)D), which factors the 3D kernel and also
learns the task. The reply gives each model's test accuracy (on held-out clips), a
picture of sample clips, and a chart of both models' accuracy (final, and per epoch).

Defaults (800 clips, 6 epochs) take about 3 s on a GPU and 10–20 s on two CPU cores;
the largest run (4000 clips, 30 epochs) about 30 s on an H200 and is meant for the GPU.
"""

from __future__ import annotations

import math
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from gpu_queue.demos import Demo, DemoResult, Progress, figure_png

FRAMES, SIZE = 8, 32
CLASSES = ("left", "right", "up", "down")
MAX_CLIPS = 4000
MAX_EPOCHS = 30
TEST_FRACTION = 0.25
BATCH = 16
SHAPES = ("square", "disc", "cross", "ring")


class VideoParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    clips: int = Field(
        800,
        ge=40,
        le=MAX_CLIPS,
        description=f"clips generated, 25% kept for the test (40–{MAX_CLIPS})",
    )
    epochs: int = Field(
        6, ge=1, le=MAX_EPOCHS, description=f"training epochs per model (1–{MAX_EPOCHS})"
    )
    seed: int = Field(0, ge=0, le=2**31 - 1, description="seed of the clips, weights and shuffling")
    mode: Literal["3d", "2plus1d"] = Field(
        "3d", description="the temporal model: `3d` (Conv3d) or `2plus1d` ((2+1)D)"
    )


def _shape_mask(kind: str, size: int) -> list[list[float]]:
    """A ``size``×``size`` mask of one shape (values 0 or 1)."""
    c = (size - 1) / 2
    r = size / 2
    mask = []
    for y in range(size):
        row = []
        for x in range(size):
            d2 = (x - c) ** 2 + (y - c) ** 2
            if kind == "square":
                v = 1.0
            elif kind == "disc":
                v = float(d2 <= r * r)
            elif kind == "cross":
                v = float(abs(x - c) <= size / 6 or abs(y - c) <= size / 6)
            else:  # ring
                v = float((r - 2) ** 2 <= d2 <= r * r)
            row.append(v)
        mask.append(row)
    return mask


def make_clips(n: int, seed: int) -> tuple[Any, Any, list[str]]:
    """``n`` clips ``(n, 1, FRAMES, SIZE, SIZE)`` in 0..1, labels ``(n,)``, shape names.

    Classes are balanced (``i % 4``). The shape moves ``speed`` (1 or 2) pixels per
    frame; its start along the motion axis is uniform over every start that keeps it
    inside the frame, so the set of positions a clip visits has the same distribution
    for opposite directions.
    """
    import torch

    g = torch.Generator().manual_seed(seed)

    def randint(lo: int, hi: int) -> int:  # inclusive
        return int(torch.randint(lo, hi + 1, (1,), generator=g))

    clips = torch.rand((n, 1, FRAMES, SIZE, SIZE), generator=g) * 0.15
    labels = torch.tensor([i % len(CLASSES) for i in range(n)])
    labels = labels[torch.randperm(n, generator=g)]
    names: list[str] = []
    for i in range(n):
        label = CLASSES[int(labels[i])]
        kind = SHAPES[randint(0, len(SHAPES) - 1)]
        size = randint(6, 10)
        speed = randint(1, 2)
        travel = speed * (FRAMES - 1)
        mask = torch.tensor(_shape_mask(kind, size)) * (
            0.6 + 0.4 * float(torch.rand(1, generator=g))
        )
        lo = randint(0, SIZE - size - travel)  # the leftmost/topmost position it reaches
        other = randint(0, SIZE - size)  # the fixed coordinate
        for t in range(FRAMES):
            step = speed * t if label in ("right", "down") else travel - speed * t
            a = lo + step
            y, x = (other, a) if label in ("left", "right") else (a, other)
            patch = clips[i, 0, t, y : y + size, x : x + size]
            clips[i, 0, t, y : y + size, x : x + size] = torch.maximum(patch, mask)
        names.append(kind)
    return clips, labels, names


def build(kind: str, seed: int) -> Any:
    """``2d`` (frame by frame, averaged over time), ``3d`` or ``2plus1d``."""
    import torch
    from torch import nn

    torch.manual_seed(seed)

    class FrameByFrame(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.features = nn.Sequential(
                nn.Conv2d(1, 8, 3, padding=1, stride=(2, 2)),
                nn.BatchNorm2d(8),
                nn.ReLU(),
                nn.Conv2d(8, 16, 3, padding=1),
                nn.BatchNorm2d(16),
                nn.ReLU(),
                nn.AdaptiveAvgPool2d(1),
                nn.Flatten(),
            )
            self.fc = nn.Linear(16, len(CLASSES))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            b, c, t, h, w = x.shape
            frames = x.transpose(1, 2).reshape(b * t, c, h, w)  # every frame on its own
            feats = self.features(frames).view(b, t, -1)
            return self.fc(feats.mean(dim=1))  # temporal average pooling

    if kind == "2d":
        return FrameByFrame()
    if kind == "3d":
        return nn.Sequential(
            nn.Conv3d(1, 8, 3, padding=1, stride=(1, 2, 2)),
            nn.BatchNorm3d(8),
            nn.ReLU(),
            nn.Conv3d(8, 16, 3, padding=1),
            nn.BatchNorm3d(16),
            nn.ReLU(),
            nn.AdaptiveAvgPool3d(1),
            nn.Flatten(),
            nn.Linear(16, len(CLASSES)),
        )
    return nn.Sequential(  # (2+1)D: each 3×3×3 kernel split into space, then time
        nn.Conv3d(1, 8, (1, 3, 3), padding=(0, 1, 1), stride=(1, 2, 2)),
        nn.BatchNorm3d(8),
        nn.ReLU(),
        nn.Conv3d(8, 8, (3, 1, 1), padding=(1, 0, 0)),
        nn.BatchNorm3d(8),
        nn.ReLU(),
        nn.Conv3d(8, 16, (1, 3, 3), padding=(0, 1, 1)),
        nn.BatchNorm3d(16),
        nn.ReLU(),
        nn.Conv3d(16, 16, (3, 1, 1), padding=(1, 0, 0)),
        nn.BatchNorm3d(16),
        nn.ReLU(),
        nn.AdaptiveAvgPool3d(1),
        nn.Flatten(),
        nn.Linear(16, len(CLASSES)),
    )


def fit(
    model: Any,
    data: tuple[Any, Any, Any, Any],
    epochs: int,
    seed: int,
    on_epoch: Progress,
) -> list[float]:
    """Train with Adam; the test accuracy after every epoch."""
    import torch
    import torch.nn.functional as F

    x_tr, y_tr, x_te, y_te = data
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    gen = torch.Generator().manual_seed(seed)
    accs = []
    for epoch in range(epochs):
        model.train()
        order = torch.randperm(len(y_tr), generator=gen).to(y_tr.device)
        for start in range(0, len(order), BATCH):
            idx = order[start : start + BATCH]
            loss = F.cross_entropy(model(x_tr[idx]), y_tr[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
        model.eval()
        with torch.no_grad():
            pred = torch.cat([model(x_te[s : s + 256]).argmax(1) for s in range(0, len(y_te), 256)])
        accs.append((pred == y_te).float().mean().item())
        on_epoch((epoch + 1) / epochs, f"epoch {epoch + 1}/{epochs}: test accuracy {accs[-1]:.1%}")
    return accs


def _samples_png(clips: Any, labels: Any, per_class: int = 2) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    rows = []
    for c in range(len(CLASSES)):
        rows += [i for i in range(len(labels)) if int(labels[i]) == c][:per_class]
    fig, axes = plt.subplots(
        len(rows), FRAMES, figsize=(FRAMES * 1.0, len(rows) * 1.05), dpi=80, squeeze=False
    )
    for r, i in enumerate(rows):
        for t in range(FRAMES):
            ax = axes[r][t]
            ax.imshow(clips[i, 0, t].cpu().numpy(), cmap="gray", vmin=0, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
            if t == 0:
                ax.set_ylabel(CLASSES[int(labels[i])], fontsize=9)
            if r == 0:
                ax.set_title(f"t={t}", fontsize=8)
    fig.suptitle("Sample clips (one row each; the label is the motion's direction)")
    fig.tight_layout()
    return figure_png(fig)


def headline(acc2: float, acc3: float, n_test: int, temporal: str) -> str:
    """The chart's title, from this run's numbers."""
    sees2, sees3 = above_chance(acc2, n_test), above_chance(acc3, n_test)
    if sees3 and not sees2:
        return f"The {temporal} CNN sees the motion; the frame-by-frame 2D CNN guesses"
    if sees3 and sees2:
        return f"Both beat chance here ({temporal} {acc3:.0%}, 2D {acc2:.0%})"
    if sees2:
        return f"The {temporal} CNN has not learned the motion yet in this run"
    return "Neither model beats chance yet: more clips or epochs needed"


def _accuracy_png(results: dict[str, float], curves: dict[str, list[float]], n_test: int) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt
    from matplotlib.ticker import MaxNLocator

    chance = 1 / len(CLASSES)
    band = 3 * math.sqrt(chance * (1 - chance) / n_test)
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(10, 3.9), dpi=90)
    names = list(results)
    bars = ax.bar(names, [results[n] for n in names], color=["#999999", "#2a7ab9"], zorder=2)
    for bar, name in zip(bars, names, strict=True):
        verdict = "above chance" if above_chance(results[name], n_test) else "at chance"
        ax.text(
            bar.get_x() + bar.get_width() / 2,
            results[name] + 0.02,
            f"{results[name]:.0%}\n{verdict}",
            ha="center",
            va="bottom",
            fontsize=9,
        )
    for a in (ax, ax2):
        a.axhspan(
            max(0, chance - band),
            chance + band,
            color="#f4cccc",
            alpha=0.6,
            lw=0,
            zorder=0,
            label=f"guessing: 25% ± {band:.0%} ({n_test} test clips)",
        )
        a.axhline(chance, color="#d62728", ls="--", lw=1, zorder=1)
    ax.legend(loc="upper left", fontsize=8)
    ax.set_ylim(0, 1.18)
    ax.set_ylabel("test accuracy")
    ax.set_title("Which way does it move?", fontsize=10)
    for (name, accs), style in zip(curves.items(), ("s--", "o-"), strict=True):
        ax2.plot(range(1, len(accs) + 1), accs, style, label=name)
    ax2.set_ylim(0, 1.05)
    ax2.set_xlabel("epoch")
    ax2.set_ylabel("test accuracy")
    ax2.set_title("while training", fontsize=10)
    ax2.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax2.grid(alpha=0.3)
    ax2.legend(loc="upper left", fontsize=8)
    first, second = names
    fig.suptitle(headline(results[first], results[second], n_test, second.split()[0]))
    fig.tight_layout()
    return figure_png(fig)


def run(params: BaseModel, device: str, progress: Progress) -> DemoResult:
    assert isinstance(params, VideoParams)
    progress(0.0, "generating the clips")
    clips, labels, _ = make_clips(params.clips, params.seed)
    n_test = max(len(CLASSES), round(params.clips * TEST_FRACTION))
    data = (
        clips[n_test:].to(device),
        labels[n_test:].to(device),
        clips[:n_test].to(device),
        labels[:n_test].to(device),
    )
    temporal = "3D" if params.mode == "3d" else "(2+1)D"
    results: dict[str, float] = {}
    curves: dict[str, list[float]] = {}
    for k, (key, title) in enumerate((("2d", "2D frame by frame"), (params.mode, temporal))):
        model = build(key, params.seed).to(device)

        def step(f: float, what: str, k: int = k, title: str = title) -> None:
            progress(0.05 + 0.45 * (k + f), f"{title}: {what}")

        curves[title] = fit(model, data, params.epochs, params.seed, step)
        results[title] = curves[title][-1]
    progress(0.95, "drawing")
    images = [
        ("video-clips.png", _samples_png(clips[:n_test], labels[:n_test])),
        ("video-accuracy.png", _accuracy_png(results, curves, n_test)),
    ]
    progress(1.0, "done")
    acc2, acc3 = results["2D frame by frame"], results[temporal]
    lines = [
        f"Test accuracy on {n_test} held-out clips (4 directions, chance 25%):",
        f"  2D CNN frame by frame + temporal average pooling: {acc2:.1%}",
        f"  {temporal} CNN: {acc3:.1%}",
        *conclusion(acc2, acc3, n_test, temporal, params),
        f"({params.clips - n_test} training clips of {FRAMES}×{SIZE}×{SIZE}, {params.epochs} "
        f"epoch{'s' * (params.epochs != 1)} each, seed {params.seed}; trained on {device}.)",
    ]
    return DemoResult(text="\n".join(lines), images=images)


def above_chance(acc: float, n_test: int) -> bool:
    """Whether a test accuracy is clearly above chance (25%): more than three standard
    deviations of a guesser's accuracy on ``n_test`` clips above it."""
    chance = 1 / len(CLASSES)
    return acc > chance + 3 * math.sqrt(chance * (1 - chance) / n_test)


def conclusion(
    acc2: float, acc3: float, n_test: int, temporal: str, params: VideoParams
) -> list[str]:
    """What this run shows, decided from its own numbers (never assumed)."""
    sees2, sees3 = above_chance(acc2, n_test), above_chance(acc3, n_test)
    margin = 100 * 3 * math.sqrt(0.25 * 0.75 / n_test)
    more = (
        f"try more clips (clips={min(MAX_CLIPS, max(params.clips * 2, 800))}) or more epochs "
        f"(epochs={min(MAX_EPOCHS, max(params.epochs * 2, 6))})"
    )
    if sees3 and not sees2:
        return [
            f"Only the {temporal} CNN beats chance (by {100 * (acc3 - 0.25):.0f} points): its "
            "kernels see several frames at once and detect the motion. Averaging per-frame "
            "features over time forgets the order of the frames, so the 2D model guesses.",
        ]
    if sees3 and sees2:
        gap = acc3 - acc2
        better = (
            f"the {temporal} CNN is {100 * gap:.0f} points better"
            if gap > 0.05
            else "they are about as good"
        )
        return [
            f"Both models beat chance here; {better}. An order-blind 2D model can only use "
            "clues in single frames (a shape pressed against an edge), not the motion "
            "itself; with more training the 3D model's lead usually grows.",
        ]
    if sees2 and not sees3:
        return [
            f"The {temporal} CNN is still at chance while the 2D model is not: it has not "
            f"learned the motion in this run; {more}.",
        ]
    best = max(acc2, acc3)
    luck = (
        f"; {best:.0%} is above 25% but within what guessing gives on {n_test} clips"
        if best > 0.25
        else ""
    )
    return [
        f"Neither model is clearly better than chance in this run (guessing gives 25% ± "
        f"{margin:.0f} points on {n_test} test clips{luck}): with {params.clips} clips and "
        f"{params.epochs} epoch{'s' * (params.epochs != 1)} the {temporal} CNN has not learned the motion yet; {more}.",
    ]


def memory_mib(params: VideoParams) -> float:
    """GPU memory a run needs: every clip on the device, plus the activations of the
    largest (evaluation) batch, plus room for the CUDA context."""
    clips = params.clips * FRAMES * SIZE * SIZE * 4 / 2**20
    return 300 + clips * 1.2 + 256 * 16 * FRAMES * 16 * 16 * 4 * 6 / 2**20


DEMO = Demo(
    name="video",
    description="CNNs on video: a frame-by-frame 2D CNN vs a 3D CNN on clips of moving shapes",
    params=VideoParams,
    run=run,
    timeout_s=600,
    typical_s=15.0,
    memory_mib=lambda p: memory_mib(p),  # type: ignore[arg-type]
)
