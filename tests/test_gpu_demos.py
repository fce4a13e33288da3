"""The GPU demos, on the CPU (CI has no GPU): the lecture's numbers, exactly."""

from __future__ import annotations

from pathlib import Path

import pytest

torch = pytest.importorskip("torch", reason="torch is installed by the `demos` extra (make test)")

from gpu_queue.demos import DemoError, catalogue  # noqa: E402
from gpu_queue.demos.conv2d import LECTURE_F, LECTURE_G, LECTURE_H, Conv2dParams, convolve  # noqa: E402


def quiet(_fraction: float, _what: str) -> None:
    return None


def test_conv2d_reproduces_the_lecture_exactly() -> None:
    assert convolve(LECTURE_F, LECTURE_G) == [[float(v) for v in row] for row in LECTURE_H]
    result = catalogue()["conv2d"].run(Conv2dParams(), "cpu", quiet)
    assert "18  56  80  88" in result.text and "matches the slides" in result.text
    names = [n for n, _ in result.images]
    assert names == ["conv2d-steps.png", "conv2d-result.png"]
    assert all(png.startswith(b"\x89PNG") and len(png) > 2000 for _, png in result.images)


def test_conv2d_takes_a_users_grid_and_kernel() -> None:
    params = Conv2dParams(grid="1 2; 3 4", kernel="0 0; 0 1")  # type: ignore[arg-type]
    assert convolve(params.grid, params.kernel) == [[1.0, 2.0], [3.0, 4.0]]  # identity
    result = catalogue()["conv2d"].run(params, "cpu", quiet)
    assert "matches the slides" not in result.text
    with pytest.raises(ValueError, match="same number of values"):
        Conv2dParams(grid="1 2; 3", kernel="1")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="use numbers"):
        Conv2dParams(grid="a b", kernel="1")  # type: ignore[arg-type]


def test_cnn_has_the_lecture_shapes(tmp_path: Path) -> None:
    demo = catalogue()["cnn"]
    steps: list[float] = []
    result = demo.run(demo.params(classes=3, seed=1), "cpu", lambda f, _w: steps.append(f))
    assert "conv1 (4, 80, 120), pool (4, 40, 60), conv2 (2, 40, 60), flatten 4800" in result.text
    probs = [float(line.split(": ")[1]) for line in result.text.splitlines() if "class " in line]
    assert len(probs) == 3 and abs(sum(probs) - 1) < 0.01
    assert [n for n, _ in result.images] == [
        "cnn-input.png",
        "cnn-conv1.png",
        "cnn-pool.png",
        "cnn-conv2.png",
    ]
    assert steps == sorted(steps) and steps[-1] == 1.0
    again = demo.run(demo.params(classes=3, seed=1), "cpu", quiet)
    assert again.text == result.text  # seeded weights: reproducible

    from PIL import Image

    img = tmp_path / "frame.png"
    Image.new("L", (320, 240), color=200).save(img)
    out = demo.run(demo.params(image=str(img)), "cpu", quiet)
    assert "flatten 4800" in out.text
    bad = tmp_path / "notes.png"
    bad.write_text("not an image")
    with pytest.raises(DemoError, match="not an image"):
        demo.run(demo.params(image=str(bad)), "cpu", quiet)
