"""Measure style models: ``robust-style evaluate`` and its Python API.

Judges independent of any training loss network (:mod:`~robust_style.evaluate.judges`):
style distance to the artwork under the Oxford VGG-19 and AlexNet, content distance
(LPIPS) to the photo, and speed. Typical use from Python::

    from robust_style.evaluate import EvalConfig, evaluate, write_outputs

    result = evaluate(EvalConfig(models=("the-scream.onnx", "runs/scream"),
                                 artwork="the-scream.jpg", photos="heldout/"))
    print(result.mean("the-scream", "style_vgg19"))
    write_outputs(result, "eval/")  # scores.csv, scores.md, grid.png

Needs the ``train`` extra (torch, lpips).
"""

from robust_style.evaluate.core import (
    JUDGES,
    EvalConfig,
    EvalResult,
    Judges,
    PhotoScore,
    evaluate,
    load_photos,
)
from robust_style.evaluate.report import format_markdown, format_table, save_grid, write_outputs
from robust_style.evaluate.weights import JudgeWeights, find_judge_weights

__all__ = [
    "JUDGES",
    "EvalConfig",
    "EvalResult",
    "JudgeWeights",
    "Judges",
    "PhotoScore",
    "evaluate",
    "find_judge_weights",
    "format_markdown",
    "format_table",
    "load_photos",
    "save_grid",
    "write_outputs",
]
