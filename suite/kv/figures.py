"""Score against the KV cache kept: one panel per section, one line per strategy across budgets, interval bars both ways."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ...spec import ConditionSpec
from ..plotting import metric_label, pyplot, save_figure

STYLES = {"full": ("black", "s"), "streaming": ("tab:gray", "v"), "static": ("tab:blue", "o"),
          "dynamic": ("tab:red", "D"), "probe_mean": ("tab:pink", "P"), "frozen": ("tab:orange", "s"),
          "observed": ("tab:green", "^"), "random": ("tab:purple", "x"), "redrawn": ("tab:purple", "+")}
CONTROLS = {"probe_mean": "control of dynamic", "frozen": "control of dynamic", "redrawn": "control of random",
            "observed": "two passes, not a bound"}  # drawn dashed, their role in the legend
# matched budgets give (nearly) equal measured shares, so the strategies of one budget are drawn slightly apart
DODGE = {"static": 0.94, "dynamic": 0.96, "probe_mean": 0.98, "frozen": 1.0, "observed": 1.02, "random": 1.04,
         "redrawn": 1.06}
TICKS = (0.03, 0.05, 0.1, 0.2, 0.3, 0.5, 1.0)
PANELS = (("niah", "rouge_l", "NIAH"), ("hotpotqa", "f1", "HotpotQA dev"))


def strategy_of(name: str) -> str:
    return ConditionSpec.parse(name).strategy


def budget_figure(summary: dict[str, Any], title: str, path: Path) -> None:
    """x: the measured share of the KV cache kept (per KV head, mean over documents); y: the section's score. Each point
    carries its 95 % intervals on both axes; a strategy's budgets are joined in order of the share kept."""
    plt = pyplot()
    panels = [p for p in PANELS if summary.get(p[0])]  # a section the profile did not run gets no empty panel
    skipped = [caption for section, _, caption in PANELS if not summary.get(section)]
    fig, axes = plt.subplots(1, max(len(panels), 1), figsize=(6.4 * max(len(panels), 1), 5.0), squeeze=False)
    for ax, (section, metric, caption) in zip(axes[0], panels):
        data = (summary.get(section) or {}).get("conditions") or {}
        by_strategy: dict[str, list[tuple[dict, dict]]] = {}
        for name, c in data.items():
            by_strategy.setdefault(strategy_of(name), []).append((c["kept_kv"], c[metric]))
        for strategy, points in by_strategy.items():
            colour, marker = STYLES.get(strategy, ("tab:olive", "."))
            points.sort(key=lambda p: p[0]["estimate"])
            dodge = DODGE.get(strategy, 1.0)
            xs = [x["estimate"] * dodge for x, _ in points]
            ys = [y["estimate"] for _, y in points]
            ax.errorbar(xs, ys, xerr=[[(x["estimate"] - x["low"]) * dodge for x, _ in points],
                                      [(x["high"] - x["estimate"]) * dodge for x, _ in points]],
                        yerr=[[y["estimate"] - y["low"] for _, y in points], [y["high"] - y["estimate"] for _, y in points]],
                        color=colour, marker=marker, capsize=3, linewidth=1.4,
                        linestyle="none" if len(points) < 2 else "--" if strategy in CONTROLS else "-",
                        label=strategy + (f" ({CONTROLS[strategy]})" if strategy in CONTROLS else ""))
        ax.set_title(f"{caption}: {summary[section]['documents']} documents", fontsize=10)
        ax.set_xlabel("KV cache kept: measured share of (KV head, key) pairs over the decode steps\n"
                      "(log scale; the strategies of one budget are drawn slightly apart)", fontsize=9)
        ax.set_ylabel(f"{metric_label(metric)} (mean, 95 % CI)")
        ax.set_xscale("log")
        ax.set_xlim(0.025, 1.3)
        ax.set_xticks(TICKS, [f"{t:g}" for t in TICKS])
        ax.minorticks_off()
        ax.set_ylim(-0.03, 1.03)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="upper left", ncol=2)
    fig.suptitle(title + (f"\n(not run in this profile: {', '.join(skipped)})" if skipped else ""), fontsize=10)
    fig.tight_layout()
    save_figure(fig, path)
