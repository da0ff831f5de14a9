"""Instruments for choosing and checking a loss network.

* :mod:`~robust_style.analysis.robustness_metric`: layer robustness R(f) (Ilyas et al.,
  Distill 2019), with :mod:`~robust_style.analysis.robustness_report` for table/CSV/chart.
* :mod:`~robust_style.analysis.optimize`: per-image style transfer by optimisation
  (Gatys et al. 2016).
* :mod:`~robust_style.analysis.backbone_train`: adversarial training of a ResNet-50 loss
  network with MadryLab's ``robustness`` library (optional extra ``robust-style[robustness]``),
  through the compatibility layer :mod:`~robust_style.analysis.robustness_compat`.

Submodules are imported on use; this package imports nothing heavy itself.
"""
