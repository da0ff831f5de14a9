"""R(f) results out: a terminal table, a CSV file and a bar chart (layers × backbones)."""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from robust_style.analysis.robustness_metric import LayerRobustness, RobustnessConfig
from robust_style.errors import UserError
from robust_style.fileio import atomic_write_bytes

__all__ = ["CSV_COLUMNS", "RobustnessRow", "format_table", "plot_chart", "write_csv"]

CSV_COLUMNS = ("backbone", "weights", "layer", "r", "max_change", "pair_distance",
               "n_images", "image_size", "eps", "steps", "step_size")


@dataclass(frozen=True)
class RobustnessRow:
    """One layer of one backbone, with what produced it."""

    backbone: str
    weights: str  # a file name, or "random init"
    result: LayerRobustness
    image_size: int
    config: RobustnessConfig

    @property
    def label(self) -> str:
        return f"{self.backbone} ({self.weights})"

    def as_dict(self) -> dict[str, str]:
        r = self.result
        return {"backbone": self.backbone, "weights": self.weights, "layer": r.layer,
                "r": f"{r.r:.6g}", "max_change": f"{r.max_change:.6g}",
                "pair_distance": f"{r.pair_distance:.6g}", "n_images": str(r.n_images),
                "image_size": str(self.image_size), "eps": f"{self.config.eps:g}",
                "steps": str(self.config.steps), "step_size": f"{self.config.alpha:.6g}"}


def write_csv(rows: Sequence[RobustnessRow], path: str | Path) -> Path:
    """Write the rows as CSV (header :data:`CSV_COLUMNS`), atomically."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow(row.as_dict())
    out = Path(path)
    atomic_write_bytes(out, buf.getvalue().encode("utf-8"))
    return out


def format_table(rows: Sequence[RobustnessRow]) -> str:
    """A fixed-width table: backbone, layer, R(f), numerator, denominator."""
    header = ("backbone", "layer", "R(f)", "max ‖Δf‖ (PGD)", "mean ‖f(x1)−f(x2)‖")
    body = [(row.label, row.result.layer, f"{row.result.r:.4f}", f"{row.result.max_change:.4g}",
             f"{row.result.pair_distance:.4g}") for row in rows]
    widths = [max(len(h), *(len(b[i]) for b in body)) if body else len(h)
              for i, h in enumerate(header)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    for b in body:
        lines.append("  ".join(c.ljust(w) for c, w in zip(b, widths, strict=True)))
    return "\n".join(lines) + "\n"


def plot_chart(rows: Sequence[RobustnessRow], path: str | Path, title: str = "") -> Path:
    """Bar chart of R(f): one bar per layer, grouped and coloured by backbone, saved as PNG.

    The y axis turns logarithmic when the values span more than two decades, so a
    random-init control does not flatten the real network's bars.
    """
    try:
        import matplotlib
    except ModuleNotFoundError as exc:
        raise UserError("the R(f) chart needs matplotlib: pip install 'robust-style[plots]' "
                        "(the CSV was written)") from exc
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = list(dict.fromkeys(row.label for row in rows))
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    fig, ax = plt.subplots(figsize=(max(6.0, 0.45 * len(rows) + 2.0), 4.2), dpi=110)
    x, ticks = 0.0, []
    for i, label in enumerate(labels):
        group = [row for row in rows if row.label == label]
        xs = [x + k for k in range(len(group))]
        ax.bar(xs, [row.result.r for row in group], color=colours[i % len(colours)],
               label=label, width=0.8)
        ticks += [(xv, row.result.layer) for xv, row in zip(xs, group, strict=True)]
        x += len(group) + 1.0
    ax.set_xticks([t for t, _ in ticks], [name for _, name in ticks], rotation=60, ha="right",
                  fontsize=8)
    positive = [row.result.r for row in rows if row.result.r > 0 and math.isfinite(row.result.r)]
    if positive and max(positive) / min(positive) > 100:
        ax.set_yscale("log")
    cfg = rows[0].config if rows else RobustnessConfig()
    ax.set_ylabel("R(f) (lower = more robust)")
    ax.set_title(title or f"Layer robustness R(f), L2 ε={cfg.eps:g}, {cfg.steps} PGD steps, "
                 f"{rows[0].result.n_images if rows else 0} images", fontsize=10)
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    out = Path(path)
    atomic_write_bytes(out, buf.getvalue())
    return out
