"""``cnn``: the lecture's small convolutional network on an 80×120 grayscale image.

    input 80×120×1
    → 3×3 convolution to 4 channels (padding 1) + ReLU   80×120×4
    → 2×2 max pooling                                    40×60×4
    → 3×3 convolution to 2 channels (padding 1) + ReLU   40×60×2
    → flatten                                            4800
    → fully connected to C classes, softmax              C probabilities

The weights are initialised from a seed (nothing is downloaded), so the probabilities
show the mechanics, not a trained model's judgement. The image is an attachment (any
format Pillow reads, converted to grayscale and resized to 120×80) or the bundled
sample, a synthetic frame drawn in code. The feature maps of every stage are posted as
images.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, Field

from gpu_queue.demos import Demo, DemoError, DemoResult, Progress, figure_png

HEIGHT, WIDTH = 80, 120
MAX_IMAGE_BYTES = 10 * 1024 * 1024


class CnnParams(BaseModel):
    classes: int = Field(5, ge=2, le=20, description="number of classes C")
    seed: int = Field(0, ge=0, description="seed of the random weights")
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


def build(classes: int, seed: int):  # type: ignore[no-untyped-def]
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


def _maps_png(title: str, maps: list[list[list[float]]]) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    fig, axes = plt.subplots(1, len(maps), figsize=(3.0 * len(maps), 2.4), dpi=80, squeeze=False)
    for i, m in enumerate(maps):
        axes[0][i].imshow(m, cmap="gray")
        axes[0][i].set_title(f"channel {i + 1}", fontsize=9)
        axes[0][i].set_xticks([])
        axes[0][i].set_yticks([])
    fig.suptitle(title)
    fig.tight_layout()
    return figure_png(fig)


def run(params: BaseModel, device: str, progress: Progress) -> DemoResult:
    import torch

    assert isinstance(params, CnnParams)
    progress(0.05, "loading the image")
    image = load_image(params.image) if params.image else sample_image()
    model = build(params.classes, params.seed).to(device).eval()
    x = torch.tensor(image, dtype=torch.float32, device=device)[None, None]
    progress(0.3, "running the network")
    with torch.no_grad():
        out = model(x)
    shapes = {k: tuple(v.shape[1:]) for k, v in out.items()}
    progress(0.6, "drawing the feature maps")
    images = [
        ("cnn-input.png", _maps_png("input (80×120, grayscale)", [image])),
        (
            "cnn-conv1.png",
            _maps_png("after 3×3 conv → 4 channels (80×120×4)", out["conv1"][0].cpu().tolist()),
        ),
        ("cnn-pool.png", _maps_png("after 2×2 max pool (40×60×4)", out["pool"][0].cpu().tolist())),
        (
            "cnn-conv2.png",
            _maps_png("after 3×3 conv → 2 channels (40×60×2)", out["conv2"][0].cpu().tolist()),
        ),
    ]
    probs = out["probs"][0].cpu().tolist()
    progress(1.0, "done")
    lines = [
        f"conv1 {shapes['conv1']}, pool {shapes['pool']}, conv2 {shapes['conv2']}, "
        f"flatten {shapes['flat'][0]}, softmax over {params.classes} classes:",
        *(f"  class {i + 1}: {p:.3f}" for i, p in enumerate(probs)),
        f"(random weights, seed {params.seed}; computed on {device})",
    ]
    return DemoResult(text="\n".join(lines), images=images)


DEMO = Demo(
    name="cnn",
    description="The lecture's CNN on an 80×120 grayscale image, with every stage's feature maps",
    params=CnnParams,
    run=run,
    timeout_s=120,
)
