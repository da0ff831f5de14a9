"""On CI, a skip because a train/dev-extra module does not import is a failure (conftest)."""

from __future__ import annotations

from conftest import _ci_required_import


def test_required_import_skips_are_recognised_and_optional_ones_are_not() -> None:
    msg = "could not import 'skimage.data': No module named 'skimage'"
    assert _ci_required_import(msg) == "skimage.data"
    assert _ci_required_import("could not import 'tensorrt': No module named 'tensorrt'") is None
    assert _ci_required_import("needs ../shared: the weights") is None
