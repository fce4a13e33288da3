"""Small charts as PNG bytes (matplotlib, Agg backend, imported lazily)."""

from __future__ import annotations

import io
from collections.abc import Sequence


def bar_png(labels: Sequence[str], values: Sequence[int], *, title: str, ylabel: str) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 3.4), dpi=100)
    try:
        bars = ax.bar(
            range(len(values)), values, color=["#4c72b0", "#dd8452"][: len(values)] or None
        )
        ax.set_xticks(range(len(labels)), labels)
        ax.set_ylabel(ylabel)
        ax.set_title(title)
        ax.bar_label(bars, padding=2)
        ax.set_ylim(0, max([*values, 1]) * 1.2)
        ax.spines[["top", "right"]].set_visible(False)
        fig.tight_layout()
        buf = io.BytesIO()
        fig.savefig(buf, format="png")
        return buf.getvalue()
    finally:
        plt.close(fig)
