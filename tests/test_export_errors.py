"""``robust-style export`` failure paths: one-line errors, non-zero exits, no files left.

A small network (plumbing, not parity): the only export here is one that fails its
verification on purpose.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from test_export import train_style_model

from robust_style.cli import main
from robust_style.export.onnx_export import MAX_OPSET, MIN_OPSET
from robust_style.export.triton import triton_config
from robust_style.transformer_net import TransformerNetConfig

SMALL = TransformerNetConfig(channels=(8, 16, 16), num_residual=1)


@pytest.fixture(scope="module")
def small_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run = tmp_path_factory.mktemp("small") / "tiny"
    train_style_model(run, SMALL, steps=3, name="tiny")
    return run


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main(["-q", "export", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(code: int, err: str, *words: str) -> None:
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("robust-style: error: "), err
    assert "Traceback" not in err
    for w in words:
        assert w in lines[0], (w, lines[0])


def listing(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def test_missing_checkpoint(tmp_path: Path, capsys) -> None:
    code, _, err = run_cli(capsys, str(tmp_path / "nope"), "-o", str(tmp_path / "s.onnx"))
    assert_one_line_error(code, err, "nope")
    assert listing(tmp_path) == []


def test_corrupt_and_foreign_checkpoints(tmp_path: Path, small_run: Path, capsys) -> None:
    good = (small_run / "style_model.pt").read_bytes()
    bad = tmp_path / "truncated.pt"
    bad.write_bytes(good[: len(good) // 2])
    code, _, err = run_cli(capsys, str(bad), "-o", str(tmp_path / "s.onnx"))
    assert_one_line_error(code, err, "truncated or corrupt")
    foreign = tmp_path / "foreign.pt"
    torch.save({"weights": torch.zeros(3)}, foreign)
    code, _, err = run_cli(capsys, str(foreign), "-o", str(tmp_path / "s.onnx"))
    assert_one_line_error(code, err, "not a robust-style style model")
    empty_run = tmp_path / "empty-run"
    empty_run.mkdir()
    code, _, err = run_cli(capsys, str(empty_run), "-o", str(tmp_path / "s.onnx"))
    assert_one_line_error(code, err, "style_model.pt")
    assert listing(tmp_path) == ["empty-run", "foreign.pt", "truncated.pt"]


@pytest.mark.parametrize("opset", [MIN_OPSET - 1, MAX_OPSET + 1, 7])
def test_unknown_opset(tmp_path: Path, small_run: Path, capsys, opset: int) -> None:
    code, _, err = run_cli(capsys, str(small_run), "-o", str(tmp_path / "s.onnx"),
                           "--opset", str(opset))
    assert_one_line_error(code, err, f"opset {opset}", f"{MIN_OPSET}..{MAX_OPSET}")
    assert listing(tmp_path) == []


def test_existing_output_or_triton_entry_needs_force(tmp_path: Path, small_run: Path,
                                                     capsys) -> None:
    out = tmp_path / "s.onnx"
    out.write_bytes(b"an older model")
    code, _, err = run_cli(capsys, str(small_run), "-o", str(out))
    assert_one_line_error(code, err, "already exists", "--force")
    assert out.read_bytes() == b"an older model"
    entry = tmp_path / "triton" / "tiny"
    entry.mkdir(parents=True)
    (entry / "config.pbtxt").write_text("old")
    code, _, err = run_cli(capsys, str(small_run), "-o", str(tmp_path / "new.onnx"),
                           "--triton-repo", str(tmp_path / "triton"))
    assert_one_line_error(code, err, "already exists", "--force")
    assert not (tmp_path / "new.onnx").exists()
    assert (entry / "config.pbtxt").read_text() == "old"


def test_failed_onnx_write_leaves_no_triton_entry(tmp_path: Path, small_run: Path,
                                                  capsys) -> None:
    """The .onnx is written first: when that fails (here its temp file name is longer than
    the file system allows, a real write error), no Triton entry appears."""
    out = tmp_path / ("s" * 245 + ".onnx")  # fits NAME_MAX (255); ".NAME.XXXXXXXX.tmp" not
    code, _, err = run_cli(capsys, str(small_run), "-o", str(out),
                           "--triton-repo", str(tmp_path / "triton"))
    assert not (tmp_path / "triton" / "tiny").exists() and not out.exists()
    assert_one_line_error(code, err, "cannot write", "nothing was written")


@pytest.mark.parametrize("argv,words", [
    (["--name", "../escape"], ["bad style name"]),
    (["--verify-sizes", "1x4x4"], ["bad size"]),
    (["--triton-max-batch", "0"], ["--triton-max-batch"]),
])
def test_bad_options(tmp_path: Path, small_run: Path, capsys, argv, words) -> None:
    code, _, err = run_cli(capsys, str(small_run), "-o", str(tmp_path / "s.onnx"), *argv)
    assert_one_line_error(code, err, *words)
    assert listing(tmp_path) == []


def test_output_must_be_an_onnx_file(tmp_path: Path, small_run: Path, capsys) -> None:
    code, _, err = run_cli(capsys, str(small_run), "-o", str(tmp_path))
    assert_one_line_error(code, err, "is a folder")
    code, _, err = run_cli(capsys, str(small_run), "-o", str(tmp_path / "s.pt"))
    assert_one_line_error(code, err, ".onnx")
    assert listing(tmp_path) == []


def test_failed_verification_writes_nothing_and_reports_figures(tmp_path: Path,
                                                                small_run: Path,
                                                                capsys) -> None:
    # An fp16 model cannot reach 150 dB against fp32: the check fails for real.
    out = tmp_path / "s.onnx"
    out.write_bytes(b"an older model")
    code, stdout, err = run_cli(
        capsys, str(small_run), "-o", str(out), "--fp16", "--min-psnr", "150", "--force",
        "--verify-sizes", "1x37x53", "--triton-repo", str(tmp_path / "triton"))
    assert code == 1 and stdout == ""
    assert "failed verification; nothing was written" in err
    assert "float PSNR" in err and "< 150 dB" in err and "1x3x37x53" in err
    assert "Traceback" not in err
    assert out.read_bytes() == b"an older model"  # the old file is left as it was
    assert listing(tmp_path) == ["s.onnx"]  # no temp files, no Triton entry


def test_triton_config_rejects_unbatched() -> None:
    with pytest.raises(ValueError):
        triton_config("x", max_batch_size=0)
    assert 'name: "x"' in triton_config("x")


def test_triton_entry_force_replaces_the_whole_entry(tmp_path: Path) -> None:
    from robust_style.errors import UserError
    from robust_style.export.triton import write_triton_entry

    old = tmp_path / "tiny"
    (old / "2").mkdir(parents=True)
    (old / "2" / "model.onnx").write_bytes(b"stale version")
    (old / "config.pbtxt").write_text("old")
    with pytest.raises(UserError, match="--force"):
        write_triton_entry(tmp_path, "tiny", b"new model")
    assert (old / "config.pbtxt").read_text() == "old"
    entry = write_triton_entry(tmp_path, "tiny", b"new model", force=True, max_batch_size=4)
    assert entry == old
    assert listing(tmp_path) == ["tiny", "tiny/1", "tiny/1/model.onnx", "tiny/config.pbtxt"]
    assert (entry / "1" / "model.onnx").read_bytes() == b"new model"
    assert "max_batch_size: 4" in (entry / "config.pbtxt").read_text()
