"""ROC curves of the hallucination detectors, one panel per label, drawn from the stage's result file."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ...probes.hallucination import LABELS
from ..plotting import pyplot, save_figure

# the detectors drawn: those that read only steps before the judged token, the strongest confound, and the
# by-construction reference (grey, dashed), so a curve's advantage over length alone is visible
DRAWN = ("target_absence", "target_mass", "lookback_lens", "lookback_mean", "hidden_state", "entropy", "context_length",
         "absence")
STYLES = {"target_absence": ("tab:red", "-"), "target_mass": ("tab:orange", "--"), "lookback_lens": ("tab:blue", "-"),
          "lookback_mean": ("tab:cyan", ":"), "hidden_state": ("tab:green", "--"), "entropy": ("tab:purple", ":"),
          "context_length": ("black", "-."), "absence": ("0.5", "--")}


def roc_figure(levels: dict[str, Any], panels: Sequence[tuple[str, str]], title: str, path: Path) -> None:
    """One ROC panel per ``(level, caption)``; each curve's legend carries its AUROC with the 95 % interval."""
    plt = pyplot()
    fig, axes = plt.subplots(1, len(panels), figsize=(6.2 * len(panels), 5.6), squeeze=False)
    for ax, (level, caption) in zip(axes[0], panels):
        data = levels.get(level) or {}
        test = data.get("test") or {}
        ax.plot([0, 1], [0, 1], color="0.6", linewidth=0.8, label="chance (AUROC 0.5)")
        for name in DRAWN:
            d = (data.get("detectors") or {}).get(name)
            if d:
                colour, style = STYLES[name]
                a = d["auroc"]
                ax.plot(d["roc"]["fpr"], d["roc"]["tpr"], style, color=colour, linewidth=1.6,
                        label=f"{LABELS[name]}: {a['estimate']:.2f} [{a['low']:.2f}, {a['high']:.2f}]")
        if data.get("note"):
            ax.text(0.5, 0.5, data["note"], ha="center", va="center", wrap=True, fontsize=9)
        ax.set_title(f"{caption}\n{test.get('positives', 0)} of {test.get('rows', 0)} hallucinated, "
                     f"{test.get('documents', 0)} test documents", fontsize=9)
        ax.set_xlabel("false positive rate (faithful flagged)")
        ax.set_ylabel("true positive rate (hallucinated flagged)")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.01)
        ax.legend(fontsize=7, loc="lower right", title="AUROC [95 % CI]", title_fontsize=7)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    save_figure(fig, path)
