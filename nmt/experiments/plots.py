"""The comparison report's figures, written as PNG with matplotlib's file-only backend.

- BLEU by source-sentence length, one line per model (Bahdanau et al. 2014, Fig. 2);
- learning curves: validation BLEU and loss against steps and against wall-clock minutes;
- attention heatmaps: source subwords on x, output subwords on y (Bahdanau et al. 2014, Fig. 3).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (the backend must be chosen first)
import numpy as np  # noqa: E402


@dataclass
class AttentionExample:
    """One decoded sentence: weights (len(target), len(source)) over source subwords; rows sum to 1 (global
    attention) or to at most 1 (Luong's local attention, window softmax times a Gaussian)."""

    source: list[str]
    target: list[str]
    weights: np.ndarray


def plot_bleu_by_length(buckets: dict[str, list[dict[str, Any]]], path: Path, split: str) -> None:
    """buckets: model name -> bleu_by_length() rows (same buckets for every model)."""
    fig, ax = plt.subplots(figsize=(7, 4.2))
    first = next(iter(buckets.values()))
    labels = [f"{b['bucket']}\n({b['sentences']})" for b in first]
    x = np.arange(len(labels))
    for name, rows in buckets.items():
        y = [np.nan if r["bleu"] is None else r["bleu"] for r in rows]
        ax.plot(x, y, marker="o", label=name)
    ax.set_xticks(x, labels)
    ax.set_xlabel("source length in words (sentences)")
    ax.set_ylabel("BLEU")
    ax.set_title(f"BLEU by source length, {split}")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_learning_curves(histories: dict[str, list[dict[str, float]]], path: Path) -> None:
    """histories: model name -> the run's metrics.json (one entry per validation)."""
    fig, axes = plt.subplots(2, 2, figsize=(10, 7), sharey="row")
    panels = [
        (0, "valid_bleu", "step"),
        (0, "valid_bleu", "elapsed_min"),
        (1, "valid_loss", "step"),
        (1, "valid_loss", "elapsed_min"),
    ]
    for i, (row, metric, x_key) in enumerate(panels):
        ax = axes[row][i % 2]
        for name, history in histories.items():
            points = [(h[x_key], h[metric]) for h in history if h.get(metric) is not None]
            if points:
                ax.plot(*zip(*points), marker=".", label=name)
        ax.set_xlabel("training steps" if x_key == "step" else "wall-clock minutes (validation included)")
        ax.set_ylabel("valid BLEU" if metric == "valid_bleu" else "valid loss (NLL per token, no smoothing)")
        ax.grid(alpha=0.3)
    axes[0][0].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_attention(examples: list[AttentionExample], path: Path, title: str) -> None:
    """One heatmap per example, side by side; darker = more weight."""
    fig, axes = plt.subplots(1, len(examples), figsize=(5.5 * len(examples), 5.5), squeeze=False)
    for ax, ex in zip(axes[0], examples):
        ax.imshow(ex.weights, cmap="Greys", vmin=0.0, vmax=1.0, aspect="auto")
        ax.set_xticks(range(len(ex.source)), ex.source, rotation=90, fontsize=8)
        ax.set_yticks(range(len(ex.target)), ex.target, fontsize=8)
        ax.xaxis.tick_top()
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
