"""Small charts as PNG bytes (matplotlib, Agg backend, imported lazily)."""

from __future__ import annotations

import io
import textwrap
from collections.abc import Sequence

PALETTE = ["#4c72b0", "#dd8452", "#55a868", "#c44e52", "#8172b3"]


def bar_png(
    labels: Sequence[str],
    values: Sequence[int],
    *,
    title: str,
    ylabel: str,
    note: str | None = None,
    wrap: int = 28,
) -> bytes:
    """A bar chart of counts: whole numbers on the bars and the axis, each label
    wrapped (a paper's number and title), and ``note`` under the chart (the turnout)."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt
    from matplotlib.ticker import MaxNLocator

    # Emoji (outside the font's plane) would show as boxes: left out of the picture.
    plain = ["".join(ch for ch in label if ord(ch) < 0x10000).strip() for label in labels]
    wrapped = ["\n".join(textwrap.wrap(label, wrap)[:3]) or label for label in plain]
    lines = max((w.count("\n") + 1 for w in wrapped), default=1)
    fig, ax = plt.subplots(figsize=(6.4, 3.4 + 0.25 * lines + (0.3 if note else 0)), dpi=100)
    try:
        counts = [int(v) for v in values]
        bars = ax.bar(range(len(counts)), counts, color=PALETTE[: len(counts)] or None)
        ax.set_xticks(range(len(counts)), wrapped, fontsize=9)
        ax.set_ylabel(ylabel)
        ax.set_title(title)
        ax.bar_label(bars, labels=[str(c) for c in counts], padding=2, fontsize=11)
        ax.set_ylim(0, max([*counts, 1]) * 1.2)
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        ax.spines[["top", "right"]].set_visible(False)
        if note:
            fig.text(0.5, 0.01, note, ha="center", va="bottom", fontsize=9, color="#333333",
                     wrap=True)  # fmt: skip
        fig.tight_layout(rect=(0, 0.07 if note else 0, 1, 1))
        buf = io.BytesIO()
        fig.savefig(buf, format="png")
        return buf.getvalue()
    finally:
        plt.close(fig)
