"""robust_style.fileio: atomic writes (all or nothing, ordinary permissions) and sha256."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from robust_style.fileio import (
    atomic_write,
    atomic_write_bytes,
    atomic_write_text,
    file_mode,
    sha256_file,
)


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


def test_failure_inside_block_keeps_old_file_and_leaves_no_temp(tmp_path: Path) -> None:
    target = tmp_path / "model.bin"
    target.write_bytes(b"old contents")
    with pytest.raises(RuntimeError, match="boom"), atomic_write(target) as fh:
        fh.write(b"half of the new")
        # While writing, the data goes to a hidden temp file beside the target.
        (tmp,) = _leftovers(tmp_path)
        assert tmp.startswith(".model.bin.")
        assert target.read_bytes() == b"old contents"
        raise RuntimeError("boom")
    assert target.read_bytes() == b"old contents"
    assert _leftovers(tmp_path) == []


def test_failure_on_new_target_creates_nothing(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "new.txt"
    with pytest.raises(KeyboardInterrupt), atomic_write(target, "w") as fh:
        fh.write("partial")
        raise KeyboardInterrupt
    assert not target.exists()
    assert _leftovers(target.parent) == []


def test_success_replaces_whole_file_and_creates_parent(tmp_path: Path) -> None:
    target = tmp_path / "a" / "b" / "out.bin"
    payload = os.urandom(3 << 20)  # several write chunks
    assert atomic_write_bytes(target, payload) == target
    assert target.read_bytes() == payload
    atomic_write_bytes(target, b"short")
    assert target.read_bytes() == b"short"
    assert _leftovers(target.parent) == []


def test_text_mode_encoding_and_newline(tmp_path: Path) -> None:
    target = tmp_path / "log.csv"
    with atomic_write(target, "w", encoding="utf-8", newline="") as fh:
        fh.write("step,loss\r\n1,0.5\r\n")
    assert target.read_bytes() == b"step,loss\r\n1,0.5\r\n"
    atomic_write_text(target, "Gemälde ✓\n")
    assert target.read_bytes() == "Gemälde ✓\n".encode()


@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002])
def test_permissions_follow_umask(tmp_path: Path, umask: int) -> None:
    old = os.umask(umask)
    try:
        assert file_mode() == 0o666 & ~umask
        target = tmp_path / f"out-{umask:o}.bin"
        atomic_write_bytes(target, b"x")
        plain = tmp_path / f"plain-{umask:o}.bin"
        plain.write_bytes(b"x")
    finally:
        os.umask(old)
    # The same mode a plain open() gives, not mkstemp's 0600.
    assert target.stat().st_mode & 0o777 == 0o666 & ~umask
    assert target.stat().st_mode & 0o777 == plain.stat().st_mode & 0o777


def test_bad_mode_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="mode"), atomic_write(tmp_path / "x", "ab"):
        pass
    assert list(tmp_path.iterdir()) == []


def test_sha256_matches_hashlib_on_a_real_file(tmp_path: Path) -> None:
    f = tmp_path / "data.bin"
    data = os.urandom((2 << 20) + 12345)  # crosses chunk boundaries
    f.write_bytes(data)
    want = hashlib.sha256(data).hexdigest()
    assert sha256_file(f) == want
    seen: list[int] = []
    assert sha256_file(str(f), chunk_size=4096, on_chunk=seen.append) == want
    assert sum(seen) == len(data) and max(seen) == 4096
    empty = tmp_path / "empty"
    empty.write_bytes(b"")
    assert sha256_file(empty) == hashlib.sha256(b"").hexdigest()
    with pytest.raises(FileNotFoundError):
        sha256_file(tmp_path / "missing")


def test_one_helper_per_job_in_the_package() -> None:
    """One atomic write and one file hash (fileio), one TOKEN_ENV, one class per name."""
    import ast

    import robust_style

    root = Path(robust_style.__file__).parent
    functions: dict[str, list[str]] = {}
    classes: dict[str, list[str]] = {}
    token_env: list[str] = []
    for path in sorted(root.rglob("*.py")):
        if "protos" in path.parts:
            continue
        rel = str(path.relative_to(root))
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.FunctionDef) and node.col_offset == 0:
                functions.setdefault(node.name, []).append(rel)
            elif isinstance(node, ast.ClassDef):
                classes.setdefault(node.name, []).append(rel)
            elif isinstance(node, ast.Assign) and any(
                    isinstance(t, ast.Name) and t.id == "TOKEN_ENV" for t in node.targets):
                token_env.append(rel)
    assert functions["atomic_write_bytes"] == ["fileio.py"]
    assert functions["sha256_file"] == ["fileio.py"]
    assert len(functions.get("file_sha256", [])) <= 1, functions["file_sha256"]
    assert "compute_sha256" not in functions
    assert token_env == ["server/__init__.py"]
    assert classes["StyleModel"] == ["server/registry/style_model.py"]


def test_first_line_of_an_exception_never_raises_on_an_empty_message() -> None:
    from robust_style.errors import first_line

    assert first_line(ValueError("\n  bad thing\nmore")) == "bad thing"
    assert first_line(ValueError("")) == "ValueError"
    assert first_line("") == "" and first_line("x" * 300, 10) == "x" * 10
