"""Opening an uploaded image without letting it decode into gigabytes.

Pillow's ``Image.open`` reads only the header; the pixels are decoded later (``load``,
``convert``, ``resize``). A small PNG can declare 20000×20000 pixels (a "decompression
bomb": a few KB that decode to 400 MB or more), so every image a student sends is opened
with :func:`open_image`, which refuses one of more than ``MAX_PIXELS`` pixels from its
header, before anything is decoded: at submission (``commands/gpu.py``) and again in the
worker (``cnn``, ``classify``). Pillow's own guard (``Image.MAX_IMAGE_PIXELS``) is set to
the same limit, so even code that forgot the check cannot decode more than twice it.
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from gpu_queue.demos import DemoError

#: The most pixels (width × height) of an image a demo decodes: 25 megapixels, e.g.
#: 6000×4000, a large camera photo (about 100 MB once decoded as RGB).
MAX_PIXELS = 25_000_000


class TooManyPixels(DemoError):
    """An image larger than the limit; ``str()`` is the student's message."""


def _megapixels(n: int) -> str:
    return f"{n / 1_000_000:.1f}".removesuffix(".0") + " megapixels"


def guard_pillow(max_pixels: int = MAX_PIXELS) -> None:
    """Pillow's own decompression-bomb guard at ``max_pixels`` (it warns above that and
    refuses twice that, at ``Image.open``)."""
    from PIL import Image

    if Image.MAX_IMAGE_PIXELS is None or max_pixels < Image.MAX_IMAGE_PIXELS:
        Image.MAX_IMAGE_PIXELS = max_pixels


def check_pixels(width: int, height: int, name: str, max_pixels: int = MAX_PIXELS) -> None:
    if width * height > max_pixels:
        raise TooManyPixels(
            f"{name} is {width}×{height} pixels ({_megapixels(width * height)}); the limit "
            f"is {_megapixels(max_pixels)}. Send a smaller image."
        )


@contextmanager
def open_image(
    src: str | Path | bytes, name: str | None = None, max_pixels: int = MAX_PIXELS
) -> Iterator[Any]:
    """Pillow's image, opened lazily (only its header read) and refused with
    ``TooManyPixels`` when it has more than ``max_pixels`` pixels. Pillow's own errors
    (``UnidentifiedImageError``, ``OSError``) are the caller's to handle."""
    import warnings

    from PIL import Image

    if name is None:
        name = Path(src).name if not isinstance(src, bytes) else "The image"
    guard_pillow(max_pixels)
    fp = io.BytesIO(src) if isinstance(src, bytes) else src
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            im = Image.open(fp)
    except Image.DecompressionBombError as exc:  # over twice the limit: no size object
        found = re.search(r"\((\d+) pixels\)", str(exc))
        size = f"{_megapixels(int(found.group(1)))}" if found else "far more than that"
        raise TooManyPixels(
            f"{name} is an image of {size}; the limit is {_megapixels(max_pixels)}. "
            "Send a smaller image."
        ) from None
    with im:
        check_pixels(*im.size, name, max_pixels)
        yield im
