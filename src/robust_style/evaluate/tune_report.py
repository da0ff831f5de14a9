"""``tune`` results out: a Markdown/terminal table, the trade-off chart, JSON and a grid."""

from __future__ import annotations

import io
from pathlib import Path

from robust_style.errors import UserError
from robust_style.evaluate.report import save_grid
from robust_style.evaluate.tune import TuneResult, result_json
from robust_style.fileio import atomic_write_bytes, atomic_write_text

__all__ = ["format_tune_table", "plot_tradeoff", "write_tune_outputs"]


def format_tune_table(result: TuneResult) -> str:
    """Markdown table of the sweep; the chosen ratio is marked."""
    lines = ["| ratio | content w | style w | tv w | style VGG-19 | style AlexNet | "
             "content LPIPS | |", "|---|---|---|---|---|---|---|---|"]
    for i, p in enumerate(result.points):
        mark = "**knee**" if i == result.knee else ""
        lines.append(f"| {p.ratio:g} | {p.content_weight:g} | {p.style_weight:.4g} | "
                     f"{p.tv_weight:.4g} | {p.style_vgg19:.4f} | {p.style_alexnet:.4f} | "
                     f"{p.content_lpips:.4f} | {mark} |")
    if (advice := result.edge_advice()) is not None:
        lines += ["", f"Note: {advice}."]
    return "\n".join(lines) + "\n"


def plot_tradeoff(result: TuneResult, path: str | Path) -> Path:
    """Content distance (x) against style distance (y), one labelled point per ratio."""
    try:
        import matplotlib
    except ModuleNotFoundError as exc:
        raise UserError("the tune chart needs matplotlib: pip install 'robust-style[plots]'") \
            from exc
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 4.2), dpi=110)
    xs = [p.content_lpips for p in result.points]
    for judge, marker in (("style_vgg19", "o"), ("style_alexnet", "s")):
        ys = [getattr(p, judge) for p in result.points]
        ax.plot(xs, ys, marker=marker, label=judge.replace("_", " "))
    ax.plot(xs, [p.style for p in result.points], "k--", lw=1, label="mean (used for the knee)")
    for p in result.points:
        ax.annotate(f"{p.ratio:g}", (p.content_lpips, p.style), textcoords="offset points",
                    xytext=(4, 4), fontsize=8)
    c = result.chosen
    ax.scatter([c.content_lpips], [c.style], s=160, facecolors="none", edgecolors="red",
               label=f"knee: ratio {c.ratio:g}")
    cfg = result.config
    ax.set_xlabel("content distance (LPIPS to the photo)")
    ax.set_ylabel("style distance (relative Gram)")
    ax.set_title(f"{result.arch}: {cfg.steps} steps at {cfg.image_size}px per ratio",
                 fontsize=10)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return atomic_write_bytes(path, buf.getvalue())


def write_tune_outputs(result: TuneResult, out_dir: str | Path) -> dict[str, Path]:
    """``tune.json``, ``tune.md``, ``tune.png`` and ``grid.png`` in ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    return {"json": atomic_write_text(out / "tune.json", result_json(result)),
            "markdown": atomic_write_text(out / "tune.md", format_tune_table(result)),
            "chart": plot_tradeoff(result, out / "tune.png"),
            "grid": save_grid(result.evaluation, out / "grid.png", height=128)}
