"""``robust-style weights download|import|verify`` against a real HTTP server on 127.0.0.1.

The server (``http.server``, threading, port 0) serves checkpoint files the tests make
(a random ResNet-50 in MadryLab's ``robustness`` layout), honours ``Range`` requests,
logs every request, and can be told to cut a transfer short or to ignore ``Range``.
Nothing here leaves this machine.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import torch
from helpers_checkpoints import madry_state_dict, random_resnet50

from robust_style.cli import main
from robust_style.errors import UserError
from robust_style.netutil import free_port
from robust_style.perceptual.weights import resolve_backbone
from robust_style.perceptual.weights.registry import load_registry

NAME = "robust-resnet50-l2-3"


@dataclass
class ServerState:
    files: dict[str, Path] = field(default_factory=dict)
    cuts: dict[str, list[int]] = field(default_factory=dict)  # path -> bytes to send, per request
    ignore_range: bool = False
    requests: list[tuple[str, str | None]] = field(default_factory=list)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, *args: object) -> None:  # quiet
        pass

    def do_GET(self) -> None:
        st = self.server.state
        path = self.path.split("?", 1)[0]
        rng = self.headers.get("Range")
        st.requests.append((path, rng))
        if path == "/error500":
            self.send_error(500, "Internal Server Error")
            return
        file = st.files.get(path)
        if file is None:
            self.send_error(404, "Not Found")
            return
        data = file.read_bytes()
        size = len(data)
        start = 0
        m = re.fullmatch(r"bytes=(\d+)-", rng or "")
        if m and not st.ignore_range:
            start = int(m.group(1))
            if start >= size:
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{size}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{size - 1}/{size}")
        else:
            self.send_response(200)
        self.send_header("Content-Length", str(size - start))
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("Content-Type", "application/octet-stream")
        self.end_headers()
        body = data[start:]
        cuts = st.cuts.get(path)
        if cuts:
            body = body[: cuts.pop(0)]
            self.close_connection = True
        self.wfile.write(body)
        self.wfile.flush()


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, state: ServerState) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.state = state

    def handle_error(self, request: object, client_address: object) -> None:
        pass  # a client that hangs up mid-transfer is part of the tests

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}{path}"


@pytest.fixture
def server() -> Iterator[_Server]:
    srv = _Server(ServerState())
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    try:
        yield srv
    finally:
        srv.shutdown()
        srv.server_close()
        thread.join(timeout=5)


@pytest.fixture(scope="module")
def madry_ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random ResNet-50 in the MadryLab layout, stored as float16 to halve its size."""
    net = random_resnet50(seed=3)
    sd = {k: (v.half() if v.is_floating_point() else v) for k, v in madry_state_dict(net).items()}
    path = tmp_path_factory.mktemp("ckpt") / "imagenet_l2_3_0.pt"
    torch.save({"model": sd, "epoch": 90, "schedule": None}, path)
    return path


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _entry(name: str, urls: list[str], *, sha: str | None, size: int | None,
           backbone: str = "robust-resnet50") -> dict:
    return {"name": name, "backbone": backbone, "training": "ImageNet, adversarial L2 ε=3.0",
            "urls": urls, "size": size, "sha256": sha, "layout": "madry", "licence": "MIT",
            "citation": "test entry"}


def _registry(tmp_path: Path, *entries: dict) -> Path:
    path = tmp_path / "registry.json"
    path.write_text(json.dumps({"format": "robust-style/weights-registry/v1",
                                "entries": list(entries)}), encoding="utf-8")
    return path


def _cli(home: Path, reg: Path, *argv: str) -> int:
    return main(["weights", argv[0], "--home", str(home), "--registry", str(reg), *argv[1:]])


def _error_line(err: str) -> str:
    lines = [ln for ln in err.splitlines() if ln.startswith("robust-style: error:")]
    assert len(lines) == 1, err
    return lines[0]


def test_download_with_progress_and_sha256_match(tmp_path: Path, server: _Server,
                                                 madry_ckpt: Path, capsys) -> None:
    server.state.files["/imagenet_l2_3_0.pt"] = madry_ckpt
    sha, size = _sha(madry_ckpt), madry_ckpt.stat().st_size
    reg = _registry(tmp_path, _entry(NAME, [server.url("/imagenet_l2_3_0.pt")], sha=sha, size=size))
    home = tmp_path / "home"

    assert _cli(home, reg, "download", NAME) == 0
    out, err = capsys.readouterr()
    cached = home / "weights" / f"{NAME}.pt"
    assert cached.read_bytes() == madry_ckpt.read_bytes()
    assert "100%" in err and NAME in err  # the tqdm bar ran to the end
    assert f"sha256 {sha} matches the registry" in out
    assert not list((home / "weights").glob("*.part*"))
    record = json.loads((home / "weights" / f"{NAME}.json").read_text())
    assert record["sha256"] == sha and record["size"] == size
    assert record["source"] == server.url("/imagenet_l2_3_0.pt")
    assert server.state.requests == [("/imagenet_l2_3_0.pt", None)]

    # A second download finds the valid copy and does not touch the network.
    assert _cli(home, reg, "download", NAME) == 0
    assert "already cached" in capsys.readouterr().out
    assert len(server.state.requests) == 1

    # `train --backbone NAME` resolves through resolve_backbone to the cached file.
    arch, weights = resolve_backbone(NAME, None, home=home, registry=load_registry([reg]))
    assert (arch, weights) == ("robust-resnet50", cached)


def test_unknown_sha256_is_recorded_and_guards_later_use(tmp_path: Path, server: _Server,
                                                         madry_ckpt: Path, capsys) -> None:
    server.state.files["/m.pt"] = madry_ckpt
    reg = _registry(tmp_path, _entry(NAME, [server.url("/m.pt")], sha=None, size=None))
    home = tmp_path / "home"
    assert _cli(home, reg, "download", NAME, "--no-progress") == 0
    assert "recorded (registry has none)" in capsys.readouterr().out
    record = json.loads((home / "weights" / f"{NAME}.json").read_text())
    assert record["sha256"] == _sha(madry_ckpt) and record["sha256_from"] == "computed"

    # The recorded hash is what verify and resolve_backbone check against later.
    cached = home / "weights" / f"{NAME}.pt"
    data = bytearray(cached.read_bytes())
    data[-100] ^= 0xFF
    cached.write_bytes(bytes(data))
    with pytest.raises(UserError, match=f"corrupt: sha256 .*expected {record['sha256']}.*"
                                        f"`robust-style weights download {NAME}`"):
        resolve_backbone(NAME, None, home=home, registry=load_registry([reg]))

    # The command that message names replaces the corrupt copy.
    assert _cli(home, reg, "download", NAME, "--no-progress") == 0
    assert cached.read_bytes() == madry_ckpt.read_bytes() and len(server.state.requests) == 2
    assert resolve_backbone(NAME, None, home=home, registry=load_registry([reg]))[1] == cached


def test_sha256_mismatch_deletes_the_partial_file(tmp_path: Path, server: _Server,
                                                  madry_ckpt: Path, capsys) -> None:
    server.state.files["/m.pt"] = madry_ckpt
    wrong = "0123456789abcdef" * 4
    reg = _registry(tmp_path, _entry(NAME, [server.url("/m.pt")], sha=wrong, size=None))
    home = tmp_path / "home"
    assert _cli(home, reg, "download", NAME, "--no-progress") != 0
    line = _error_line(capsys.readouterr().err)
    assert f"expected {wrong}, got {_sha(madry_ckpt)}" in line
    assert f"{madry_ckpt.stat().st_size} bytes" in line and "deleted" in line
    assert not (home / "weights" / f"{NAME}.pt").exists()
    assert not list((home / "weights").glob("*.part*"))


def test_md5_the_publisher_pins_is_checked(tmp_path: Path, server: _Server,
                                          madry_ckpt: Path, capsys) -> None:
    server.state.files["/m.pt"] = madry_ckpt
    real = hashlib.md5(madry_ckpt.read_bytes(), usedforsecurity=False).hexdigest()
    home = tmp_path / "home"
    bad = {**_entry(NAME, [server.url("/m.pt")], sha=None, size=None), "md5": "0" * 32}
    assert _cli(home, _registry(tmp_path, bad), "download", NAME, "--no-progress") != 0
    line = _error_line(capsys.readouterr().err)
    assert f"md5 mismatch: the publisher pins {'0' * 32}, got {real}" in line
    assert not list((home / "weights").glob(f"{NAME}*"))
    assert _cli(home, _registry(tmp_path, bad), "import", NAME, str(madry_ckpt)) != 0
    assert "md5 mismatch" in _error_line(capsys.readouterr().err)
    good = {**bad, "md5": real}
    assert _cli(home, _registry(tmp_path, good), "download", NAME, "--no-progress") == 0
    assert (home / "weights" / f"{NAME}.pt").read_bytes() == madry_ckpt.read_bytes()


def test_size_mismatch_announced_by_server(tmp_path: Path, server: _Server,
                                           madry_ckpt: Path, capsys) -> None:
    server.state.files["/m.pt"] = madry_ckpt
    size = madry_ckpt.stat().st_size
    reg = _registry(tmp_path, _entry(NAME, [server.url("/m.pt")], sha=None, size=size + 1))
    assert _cli(tmp_path / "home", reg, "download", NAME, "--no-progress") != 0
    line = _error_line(capsys.readouterr().err)
    assert f"expected {size + 1} bytes" in line and f"sends {size} bytes" in line
    assert not list((tmp_path / "home" / "weights").glob(f"{NAME}*"))


def test_truncated_transfer_then_resume(tmp_path: Path, server: _Server, madry_ckpt: Path,
                                        capsys) -> None:
    server.state.files["/m.pt"] = madry_ckpt
    cut = 3_000_000
    server.state.cuts["/m.pt"] = [cut]
    reg = _registry(tmp_path, _entry(NAME, [server.url("/m.pt")], sha=_sha(madry_ckpt),
                                     size=madry_ckpt.stat().st_size))
    home = tmp_path / "home"
    part = home / "weights" / f"{NAME}.pt.part"

    # Without retries the command stops, keeps the partial file and says how to resume.
    assert _cli(home, reg, "download", NAME, "--retries", "0", "--no-progress") != 0
    line = _error_line(capsys.readouterr().err)
    assert f"ended after {cut} of {madry_ckpt.stat().st_size} bytes" in line
    assert "run the command again to resume" in line
    assert part.stat().st_size == cut
    assert not (home / "weights" / f"{NAME}.pt").exists()

    # Running it again asks only for the missing bytes.
    assert _cli(home, reg, "download", NAME, "--no-progress") == 0
    assert server.state.requests == [("/m.pt", None), ("/m.pt", f"bytes={cut}-")]
    assert (home / "weights" / f"{NAME}.pt").read_bytes() == madry_ckpt.read_bytes()
    assert not part.exists()


def test_broken_transfer_resumes_automatically(tmp_path: Path, server: _Server,
                                               madry_ckpt: Path) -> None:
    server.state.files["/m.pt"] = madry_ckpt
    server.state.cuts["/m.pt"] = [1_000_000, 2_500_000]
    reg = _registry(tmp_path, _entry(NAME, [server.url("/m.pt")], sha=_sha(madry_ckpt), size=None))
    home = tmp_path / "home"
    assert _cli(home, reg, "download", NAME, "--no-progress") == 0
    assert [r for _, r in server.state.requests] == [None, "bytes=1000000-", "bytes=3500000-"]
    assert (home / "weights" / f"{NAME}.pt").read_bytes() == madry_ckpt.read_bytes()


def test_server_ignoring_range_restarts_cleanly(tmp_path: Path, server: _Server,
                                                madry_ckpt: Path) -> None:
    server.state.files["/m.pt"] = madry_ckpt
    server.state.cuts["/m.pt"] = [2_000_000]
    server.state.ignore_range = True
    reg = _registry(tmp_path, _entry(NAME, [server.url("/m.pt")], sha=_sha(madry_ckpt), size=None))
    home = tmp_path / "home"
    assert _cli(home, reg, "download", NAME, "--no-progress") == 0
    assert server.state.requests[1] == ("/m.pt", "bytes=2000000-")  # asked, got a 200
    assert (home / "weights" / f"{NAME}.pt").read_bytes() == madry_ckpt.read_bytes()


def test_server_down_gives_one_clear_line(tmp_path: Path, capsys) -> None:
    url = f"http://127.0.0.1:{free_port()}/imagenet_l2_3_0.pt"
    reg = _registry(tmp_path, _entry(NAME, [url], sha=None, size=None))
    assert _cli(tmp_path / "home", reg, "download", NAME, "--no-progress") == 2
    line = _error_line(capsys.readouterr().err)
    assert line == f"robust-style: error: cannot download {NAME}: {url}: connection refused " \
                   "(is the server up?)"


def test_http_errors_fall_through_to_the_next_url(tmp_path: Path, server: _Server,
                                                  madry_ckpt: Path, capsys) -> None:
    server.state.files["/mirror/m.pt"] = madry_ckpt
    urls = [server.url("/missing.pt"), server.url("/error500"), server.url("/mirror/m.pt")]
    reg = _registry(tmp_path, _entry(NAME, urls, sha=_sha(madry_ckpt), size=None))
    home = tmp_path / "home"
    assert _cli(home, reg, "download", NAME, "--no-progress") == 0
    assert [p for p, _ in server.state.requests] == ["/missing.pt", "/error500", "/mirror/m.pt"]
    rec = json.loads((home / "weights" / f"{NAME}.json").read_text())
    assert rec["source"] == urls[2]

    # All URLs failing: one line naming each URL with its cause.
    reg2 = _registry(tmp_path, _entry(NAME, urls[:2], sha=None, size=None))
    assert _cli(tmp_path / "home2", reg2, "download", NAME, "--no-progress") == 2
    line = _error_line(capsys.readouterr().err)
    assert f"{urls[0]}: HTTP 404" in line and f"{urls[1]}: HTTP 500" in line


def test_url_override_for_mirrors(tmp_path: Path, server: _Server, madry_ckpt: Path) -> None:
    server.state.files["/mirror.pt"] = madry_ckpt
    dead = f"http://127.0.0.1:{free_port()}/x.pt"
    reg = _registry(tmp_path, _entry(NAME, [dead], sha=_sha(madry_ckpt), size=None))
    home = tmp_path / "home"
    assert _cli(home, reg, "download", NAME, "--no-progress", "--url", server.url("/mirror.pt")) == 0
    assert (home / "weights" / f"{NAME}.pt").is_file()


def test_not_a_checkpoint_is_refused(tmp_path: Path, server: _Server, capsys) -> None:
    page = tmp_path / "page.html"
    page.write_bytes(b"<html>Dropbox: this file is not available</html>\n" * 50)
    server.state.files["/page"] = page
    reg = _registry(tmp_path, _entry(NAME, [server.url("/page")], sha=None, size=None))
    home = tmp_path / "home"
    assert _cli(home, reg, "download", NAME, "--no-progress") == 2
    line = _error_line(capsys.readouterr().err)
    assert "not a torch checkpoint" in line and "b'<html>Dropbox" in line and "deleted" in line
    assert not list((home / "weights").glob(f"{NAME}*"))


def test_import_local_file_then_verify_detects_corruption(tmp_path: Path, madry_ckpt: Path,
                                                          capsys) -> None:
    reg = _registry(tmp_path, _entry(NAME, [], sha=_sha(madry_ckpt), size=None),
                    _entry("other-robust", [], sha=None, size=None))
    home = tmp_path / "home"
    assert _cli(home, reg, "import", NAME, str(madry_ckpt)) == 0
    assert "copied" in capsys.readouterr().out
    cached = home / "weights" / f"{NAME}.pt"
    assert cached.read_bytes() == madry_ckpt.read_bytes() and not cached.is_symlink()
    assert _cli(home, reg, "import", "other-robust", str(madry_ckpt), "--link") == 0
    assert (home / "weights" / "other-robust.pt").resolve() == madry_ckpt.resolve()

    capsys.readouterr()
    assert _cli(home, reg, "verify") == 0
    out = capsys.readouterr().out
    assert out.count("ok ") == 2

    # Corrupt the copy in place (same size): verify hashes the whole file again.
    data = bytearray(cached.read_bytes())
    data[len(data) // 2] ^= 0x01
    cached.write_bytes(bytes(data))
    assert _cli(home, reg, "verify") == 1
    captured = capsys.readouterr()
    assert f"FAILED  {NAME}: sha256 mismatch: expected {_sha(madry_ckpt)}, got " \
           f"{hashlib.sha256(bytes(data)).hexdigest()}" in captured.out
    assert "ok      other-robust" in captured.out
    assert "1 of 2 cached file(s) failed verification" in captured.err
    with pytest.raises(UserError, match="corrupt"):
        resolve_backbone(NAME, None, home=home, registry=load_registry([reg]))


def test_import_refuses_the_wrong_file(tmp_path: Path, madry_ckpt: Path, capsys) -> None:
    home = tmp_path / "home"
    reg = _registry(tmp_path, _entry("vgg-thing", [], sha=None, size=None, backbone="vgg16"))
    assert _cli(home, reg, "import", "vgg-thing", str(madry_ckpt)) == 2
    line = _error_line(capsys.readouterr().err)
    assert "cannot import" in line and "does not fit" in line and "missing keys" in line
    assert not (home / "weights" / "vgg-thing.pt").exists()


def test_import_the_shared_caffe_vgg16(tmp_path: Path, shared_vgg16: Path, capsys) -> None:
    """The built-in `vgg16-caffe` entry (sha256 from ../shared) accepts the real file."""
    home = tmp_path / "home"
    assert main(["weights", "import", "vgg16-caffe", str(shared_vgg16), "--link",
                 "--home", str(home)]) == 0
    assert "6a68f3706b182f96340ab3106417cbbcf708e6dd1668e0cd7bdacacb53432144" in capsys.readouterr().out
    arch, path = resolve_backbone("vgg16-caffe", None, home=home)
    assert arch == "vgg16-caffe" and path == home / "weights" / "vgg16-caffe.pt"


def test_list_shows_cache_state(tmp_path: Path, server: _Server, madry_ckpt: Path,
                                capsys) -> None:
    server.state.files["/m.pt"] = madry_ckpt
    server.state.cuts["/m.pt"] = [1_000_000]
    reg = _registry(tmp_path, _entry(NAME, [server.url("/m.pt")], sha=None, size=None),
                    _entry("never", [server.url("/none.pt")], sha=None, size=None))
    home = tmp_path / "home"
    _cli(home, reg, "download", NAME, "--retries", "0", "--no-progress")
    capsys.readouterr()
    assert _cli(home, reg, "list") == 0
    out = capsys.readouterr().out
    row = next(ln for ln in out.splitlines() if ln.startswith(NAME + " "))
    assert "partial (1.0 MB)" in row and "robust-resnet50" in row and "127.0.0.1" in row
    assert _cli(home, reg, "download", NAME, "--no-progress") == 0
    capsys.readouterr()
    assert _cli(home, reg, "list", "--json") == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)["entries"]}
    assert rows[NAME]["cached"] == "yes" and rows["never"]["cached"] == "no"
    assert rows[NAME]["recorded_sha256"] == _sha(madry_ckpt)
    assert _cli(home, reg, "path", NAME) == 0
    assert capsys.readouterr().out.strip() == str(home / "weights" / f"{NAME}.pt")
    assert _cli(home, reg, "path", "never") == 2
    assert "robust-style weights download never" in _error_line(capsys.readouterr().err)


def test_one_download_per_entry_at_a_time(tmp_path: Path, server: _Server, madry_ckpt: Path,
                                          capsys) -> None:
    fcntl = pytest.importorskip("fcntl")
    server.state.files["/m.pt"] = madry_ckpt
    reg = _registry(tmp_path, _entry(NAME, [server.url("/m.pt")], sha=None, size=None))
    home = tmp_path / "home"
    (home / "weights").mkdir(parents=True)
    with (home / "weights" / f".{NAME}.pt.lock").open("a") as fh:  # another process's lock
        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        assert _cli(home, reg, "download", NAME, "--no-progress") == 2
        assert "another process is downloading" in _error_line(capsys.readouterr().err)
        assert server.state.requests == []
    assert _cli(home, reg, "download", NAME, "--no-progress") == 0


def test_a_mirror_finishes_what_another_started_when_sha256_is_known(
        tmp_path: Path, server: _Server, madry_ckpt: Path) -> None:
    server.state.files["/a.pt"] = madry_ckpt
    server.state.files["/b.pt"] = madry_ckpt
    server.state.cuts["/a.pt"] = [1_500_000]
    urls = [server.url("/a.pt"), server.url("/b.pt")]
    reg = _registry(tmp_path, _entry(NAME, urls, sha=_sha(madry_ckpt), size=None))
    home = tmp_path / "home"
    assert _cli(home, reg, "download", NAME, "--retries", "0", "--no-progress") == 0
    assert server.state.requests == [("/a.pt", None), ("/b.pt", "bytes=1500000-")]
    assert (home / "weights" / f"{NAME}.pt").read_bytes() == madry_ckpt.read_bytes()

    # Without a known sha256 a partial file from another URL is never continued.
    server.state.requests.clear()
    server.state.cuts["/a.pt"] = [1_500_000]
    reg = _registry(tmp_path, _entry("other", urls, sha=None, size=None))
    assert _cli(home, reg, "download", "other", "--retries", "0", "--no-progress") == 0
    assert server.state.requests == [("/a.pt", None), ("/b.pt", None)]


def test_train_backbone_name_uses_the_downloaded_file(tmp_path: Path, server: _Server,
                                                      madry_ckpt: Path, photo_dir: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """download from the local server, then `train --backbone NAME` with no weights path."""
    from robust_style.transformer_net import load_style_model

    server.state.files["/imagenet_l2_3_0.pt"] = madry_ckpt
    reg = _registry(tmp_path, _entry(NAME, [server.url("/imagenet_l2_3_0.pt")], sha=None,
                                     size=None))
    monkeypatch.setenv("ROBUST_STYLE_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("ROBUST_STYLE_REGISTRY", str(reg))
    assert main(["weights", "download", NAME, "--no-progress"]) == 0
    cached = tmp_path / "home" / "weights" / f"{NAME}.pt"

    photo = next(photo_dir.rglob("*.jpg"))
    run = tmp_path / "run"
    assert main(["train", "--style", str(photo), "--content", str(photo_dir), "--out", str(run),
                 "--backbone", NAME, "--image-size", "32", "--batch-size", "1",
                 "--max-steps", "1", "--workers", "0", "--sample-interval", "0"]) == 0
    meta = load_style_model(run).meta
    assert meta["backbone_arch"] == "robust-resnet50"
    assert meta["backbone_weights"] == str(cached)
    assert meta["backbone_sha256"] == _sha(madry_ckpt)
