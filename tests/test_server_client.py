"""The Python client and the `styles` / `stylize` commands against a real server."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from server_fixtures import decode, encode, photo

from robust_style.cli import main
from robust_style.netutil import free_port
from robust_style.server.app import StyleServer
from robust_style.server.client import ClientError, StyleClient


def test_style_client(server: StyleServer, tmp_path: Path) -> None:
    with StyleClient(server.address) as client:
        assert client.wait_ready(10)
        styles = client.list_styles()
        assert [s.name for s in styles] == ["tiny", "tiny2"] and all(s.ready for s in styles)
        path = tmp_path / "coffee.jpg"
        Image.fromarray(photo("coffee", 90)).save(path)
        by_path = client.stylize(path, "tiny", max_side=50, format="jpeg", quality=70)
        assert by_path.mime_type == "image/jpeg" and max(by_path.width, by_path.height) == 50
        assert set(by_path.timing_ms) == {"decode", "queue", "inference", "encode", "total"}
        content = photo("chelsea", 40)
        same = client.stylize(encode(content), "tiny", strength=0.0)
        np.testing.assert_array_equal(decode(same.image), content)
        frames = [encode(photo(n, 32)) for n in ("rocket", "coffee", "astronaut")]
        results = list(client.stylize_stream(frames, "tiny2"))
        assert [r.id for r in results] == ["0", "1", "2"] and all(r.style == "tiny2"
                                                                  for r in results)
        with pytest.raises(ClientError, match="NOT_FOUND"):
            client.stylize(encode(content), "nope")


def test_styles_command(server: StyleServer, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["styles", "--server", server.address]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split()[:3] == ["STYLE", "VERSION", "READY"]
    assert [line.split()[0] for line in out[1:]] == ["tiny", "tiny2"]
    assert main(["styles", "--server", server.address, "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data[0]["name"] == "tiny" and data[0]["metadata"]["name"] == "tiny"


def test_stylize_command_files_and_folders(server: StyleServer, photo_dir: Path, tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    single = next(photo_dir.rglob("*.jpg"))
    rc = main(["stylize", str(photo_dir), str(single), "--style", "tiny2", "--server",
               server.address, "-o", str(out), "--max-side", "48"])
    assert rc == 0
    inputs = sorted(p for p in photo_dir.rglob("*") if p.is_file())
    written = sorted(p for p in out.rglob("*.png"))
    assert len(written) == len(inputs) + 1  # + the single file, at the top of OUT_DIR
    assert (out / f"{single.stem}_tiny2.png").is_file()
    for src in inputs:
        rel = src.relative_to(photo_dir)
        dst = out / rel.parent / f"{rel.stem}_tiny2.png"
        img = Image.open(dst)
        w, h = Image.open(src).size
        assert max(img.size) == 48 and abs(img.size[0] / img.size[1] - w / h) < 0.1
    assert f"wrote {len(inputs) + 1} image(s)" in capsys.readouterr().out

    bad = tmp_path / "broken.png"
    bad.write_bytes(b"not a png")
    jpg_out = tmp_path / "jpg"
    rc = main(["stylize", str(single), str(bad), "--style", "tiny", "--server", server.address,
               "-o", str(jpg_out), "--format", "jpeg", "--preserve-color", "--strength", "0.8",
               "--max-side", "40"])
    captured = capsys.readouterr()
    assert rc == 1 and "broken.png" in captured.err and "INVALID_ARGUMENT" in captured.err
    assert (jpg_out / f"{single.stem}_tiny.jpg").read_bytes()[:2] == b"\xff\xd8"


def test_stylize_command_errors(server: StyleServer, tmp_path: Path,
                                capsys: pytest.CaptureFixture[str]) -> None:
    img = tmp_path / "a.png"
    img.write_bytes(encode(photo("coffee", 32)))
    assert main(["stylize", str(img), "--server", server.address, "-o", str(tmp_path)]) == 2
    assert "--style is needed; the server has: tiny, tiny2" in capsys.readouterr().err
    assert main(["stylize", str(tmp_path / "missing.jpg"), "--style", "tiny"]) == 2
    assert "no such file" in capsys.readouterr().err
    port = free_port()  # nothing answers there
    for argv in (["styles"], ["stylize", str(img), "--style", "tiny"]):
        assert main([*argv, "--server", f"127.0.0.1:{port}", "--timeout", "5"]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "cannot reach the robust-style server" in err[0]


def test_stylize_refuses_inputs_that_would_overwrite_each_other(
        server: StyleServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    png = encode(photo("coffee", 32))
    for sub in ("a", "b"):
        (tmp_path / sub).mkdir()
        (tmp_path / sub / "x.png").write_bytes(png)
    (tmp_path / "a" / "x.jpg").write_bytes(encode(photo("coffee", 32), "JPEG"))
    out = tmp_path / "out"
    for inputs in ([tmp_path / "a" / "x.png", tmp_path / "b" / "x.png"],
                   [tmp_path / "a" / "x.png", tmp_path / "a" / "x.jpg"],
                   [tmp_path / "a"]):
        argv = ["stylize", *map(str, inputs), "--style", "tiny", "--server", server.address,
                "-o", str(out)]
        assert main(argv) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "both be written" in err[0], err
    assert not out.exists(), "nothing may be sent or written before the check"
    # the same file twice is one input; folders keep their sub-paths apart
    argv = ["stylize", str(tmp_path / "b" / "x.png"), str(tmp_path / "b" / "x.png"), "--style",
            "tiny", "--server", server.address, "-o", str(out)]
    assert main(argv) == 0
    assert sorted(p.name for p in out.iterdir()) == ["x_tiny.png"]


def test_stylize_refuses_a_style_name_that_is_not_a_safe_file_name(
        server: StyleServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    img = tmp_path / "a.png"
    img.write_bytes(encode(photo("coffee", 32)))
    argv = ["stylize", str(img), "--style", "../../escaped", "--server", server.address,
            "-o", str(tmp_path / "out")]
    assert main(argv) == 2
    assert "unusable style name" in capsys.readouterr().err
    assert not list(tmp_path.parent.glob("**/*escaped*"))


def test_unreadable_files_are_one_line_client_errors(server: StyleServer, tmp_path: Path) -> None:
    good = tmp_path / "good.png"
    Image.fromarray(photo("rocket", 32)).save(good)
    with StyleClient(server.address) as client:
        for bad in (tmp_path / "missing.jpg", tmp_path):
            with pytest.raises(ClientError, match="cannot read image file") as info:
                client.stylize(bad, "tiny")
            assert "\n" not in str(info.value) and str(bad) in str(info.value)
        got = []
        with pytest.raises(ClientError) as info:
            for res in client.stylize_stream([good, tmp_path / "missing.jpg", good], "tiny"):
                got.append(res.id)
        assert got == ["0"]  # the frame before the missing file was answered
        assert "missing.jpg" in str(info.value) and "UNKNOWN" not in str(info.value)
        assert client.stylize(good, "tiny").style == "tiny"  # the client still works


def test_verbose_flag_raises_the_log_level() -> None:
    import subprocess
    import sys

    code = ("import logging, sys\nfrom robust_style.cli import main\n"
            "main(sys.argv[1:-1] + ['styles', '--server', '127.0.0.1:' + sys.argv[-1], "
            "'--timeout', '1'])\nprint(logging.getLevelName(logging.getLogger().level))")
    port = str(free_port())  # nothing answers there
    levels = [subprocess.run([sys.executable, "-c", code, *flags, port], capture_output=True,
                             text=True, timeout=60).stdout.split()[-1]
              for flags in ([], ["-v"], ["-q"])]
    assert levels == ["INFO", "DEBUG", "WARNING"]
