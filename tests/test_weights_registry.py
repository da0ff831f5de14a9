"""The weights registry data file, the cache directory, sha256 memo, ``resolve_backbone``."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlparse

import pytest

from robust_style.errors import UserError
from robust_style.perceptual.backbones import BACKBONES
from robust_style.perceptual.weights import cache_dir, file_sha256, resolve_backbone
from robust_style.perceptual.weights.registry import (
    ARCHITECTURES,
    REGISTRY_ENV,
    builtin_registry_path,
    load_registry,
    parse_entry,
)

CAFFE_SHA = "6a68f3706b182f96340ab3106417cbbcf708e6dd1668e0cd7bdacacb53432144"


def _raw(**over: object) -> dict:
    raw = {"name": "x-net", "backbone": "resnet50", "training": "ImageNet",
           "urls": ["https://example.org/x.pth"], "size": 10, "sha256": None,
           "layout": "torchvision", "licence": "MIT", "citation": "someone 2020"}
    raw.update(over)
    return raw


def test_architectures_match_backbones() -> None:
    assert tuple(BACKBONES) == ARCHITECTURES


def test_every_builtin_entry_is_well_formed() -> None:
    data = json.loads(builtin_registry_path().read_text(encoding="utf-8"))
    reg = load_registry(env={})
    assert len(reg) == len(data["entries"])  # unique names, every entry parsed
    for raw in data["entries"]:
        entry = parse_entry(raw)  # raises on any malformed field
        assert entry.backbone in BACKBONES
        assert len(set(entry.urls)) == len(entry.urls), entry.name
        for url in entry.urls:
            # https only, and no credentials (an Azure SAS token with write/delete rights)
            assert urlparse(url).scheme == "https" and urlparse(url).hostname, url
            assert "sig=" not in url and "sp=" not in url, url
        if not entry.urls:  # import-only entries must be checkable
            assert entry.sha256, entry.name
        for prefix_source in entry.urls:
            if "download.pytorch.org" in prefix_source:  # torch.hub: name-<sha256 prefix>.pth
                assert entry.sha256_prefix and f"-{entry.sha256_prefix}." in prefix_source
    required = {
        "robust-resnet50-l2-3": ("robust-resnet50", "L2 ε=3.0"),
        "robust-resnet50-linf-4": ("robust-resnet50", "ε=4/255"),
        "robust-resnet50-linf-8": ("robust-resnet50", "ε=8/255"),
        "resnet50-imagenet1k-v1": ("resnet50", "ImageNet"),
        "vgg16-imagenet1k": ("vgg16", "ImageNet"),
        "vgg19-imagenet1k": ("vgg19", "ImageNet"),
        "vgg16-caffe": ("vgg16-caffe", "Caffe"),
    }
    for name, (backbone, training) in required.items():
        assert reg[name].backbone == backbone and training in reg[name].training
    assert reg["vgg16-caffe"].sha256 == CAFFE_SHA and reg["vgg16-caffe"].urls == ()
    assert all(reg[n].layout == "madry" for n in reg if n.startswith("robust-"))
    # Where a source publishes a hash it is checked: Keras pins the h5's md5.
    assert reg["vgg19-caffe-keras"].md5 == "253f8cb515780f3b799900260a226db6"


@pytest.mark.parametrize(("over", "message"), [
    ({"backbone": "googlenet"}, "backbone 'googlenet' is not one of"),
    ({"sha256": "abc"}, "sha256 must be 64 lower-case hex digits"),
    ({"sha256": "A" * 64}, "sha256 must be 64 lower-case hex digits"),
    ({"size": -1}, "size must be a positive integer"),
    ({"urls": "https://example.org/x.pth"}, "urls must be a list"),
    ({"urls": ["ftp://example.org/x"]}, "is not http"),
    ({"layout": "keras"}, "layout 'keras' is not one of"),
    ({"name": "Bad Name"}, "name must be lower-case"),
    ({"licence": ""}, "licence must be a non-empty string"),
    ({"sha256_prefix": "xyz"}, "sha256_prefix must be"),
    ({"sha256": "0" * 64, "sha256_prefix": "11111111"}, "does not start with"),
    ({"homepage": "x"}, "unknown field(s) homepage"),
    ({"urls": ["http://example.org/x.pt"]}, "plain http"),
    ({"urls": ["https://a.blob.core.windows.net/x.ckpt?sp=rwd&sig=abc%3D"]}, "credentials"),
    ({"urls": ["https://user:pw@example.org/x.pt"]}, "credentials"),
    ({"md5": "xyz"}, "md5 must be 32"),
])
def test_malformed_entries_are_rejected(over: dict, message: str) -> None:
    with pytest.raises(UserError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_entry(_raw(**over))
    raw = _raw()
    del raw["citation"]
    with pytest.raises(UserError, match="lacks field"):
        parse_entry(raw)


def test_extra_registry_files_layer_over_the_builtin(tmp_path: Path) -> None:
    extra = tmp_path / "mine.json"
    extra.write_text(json.dumps({"entries": [
        _raw(name="robust-resnet50-l2-3", backbone="robust-resnet50", layout="madry",
             urls=["https://mirror.example/l2.pt"]),
        _raw(name="my-net")]}), encoding="utf-8")
    reg = load_registry(env={REGISTRY_ENV: str(extra)})
    assert reg["robust-resnet50-l2-3"].urls == ("https://mirror.example/l2.pt",)
    assert "my-net" in reg and "vgg19-imagenet1k" in reg
    dup = tmp_path / "dup.json"
    dup.write_text(json.dumps({"entries": [_raw(), _raw()]}), encoding="utf-8")
    with pytest.raises(UserError, match="more than once"):
        load_registry([dup], env={})
    with pytest.raises(UserError, match="not valid JSON"):
        (tmp_path / "bad.json").write_text("{", encoding="utf-8")
        load_registry([tmp_path / "bad.json"], env={})


def test_cache_dir_follows_env_and_argument(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("ROBUST_STYLE_HOME", str(tmp_path / "h"))
    assert cache_dir() == tmp_path / "h" / "weights"
    assert cache_dir(tmp_path / "other") == tmp_path / "other" / "weights"
    monkeypatch.delenv("ROBUST_STYLE_HOME")
    import platformdirs

    assert cache_dir() == Path(platformdirs.user_cache_dir("robust-style")) / "weights"


def test_resolve_backbone_choices(tmp_path: Path) -> None:
    home = tmp_path / "home"
    reg = load_registry(env={})
    assert resolve_backbone("resnet50", None, home=home, registry=reg) == ("resnet50", None)
    assert resolve_backbone("robust-resnet50", "w.pt", home=home, registry=reg) == \
        ("robust-resnet50", Path("w.pt"))
    with pytest.raises(UserError, match="`robust-style weights download robust-resnet50-l2-3`"):
        resolve_backbone("robust-resnet50-l2-3", None, home=home, registry=reg)
    with pytest.raises(UserError, match="`robust-style weights import vgg16-caffe FILE`"):
        resolve_backbone("vgg16-caffe", None, home=home, registry=reg)
    with pytest.raises(UserError, match="are for backbone 'robust-resnet50', not 'vgg16'"):
        resolve_backbone("vgg16", "robust-resnet50-l2-3", home=home, registry=reg)
    with pytest.raises(UserError, match="names registered weights"):
        resolve_backbone("robust-resnet50-l2-3", "w.pt", home=home, registry=reg)
    with pytest.raises(UserError, match=r"unknown backbone 'resnet51'.*vgg19.*robust-resnet50-l2-3"):
        resolve_backbone("resnet51", None, home=home, registry=reg)


def test_resolve_backbone_finds_a_cached_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The registry name given as --backbone (or as --backbone-weights) gives the cached file."""
    from helpers_checkpoints import random_resnet50, save_madry_checkpoint

    from robust_style.cli import main

    src = save_madry_checkpoint(tmp_path / "ckpt.pt", random_resnet50(seed=1))
    monkeypatch.setenv("ROBUST_STYLE_HOME", str(tmp_path / "home"))
    assert main(["weights", "import", "robust-resnet50-l2-3", str(src), "--link"]) == 0
    cached = tmp_path / "home" / "weights" / "robust-resnet50-l2-3.pt"
    assert resolve_backbone("robust-resnet50-l2-3", None) == ("robust-resnet50", cached)
    assert resolve_backbone("robust-resnet50", "robust-resnet50-l2-3") == ("robust-resnet50", cached)


def test_file_sha256_is_remembered_until_the_file_changes(tmp_path: Path) -> None:
    home = tmp_path / "home"
    f = tmp_path / "w.bin"
    f.write_bytes(b"abc" * 1000)
    real = hashlib.sha256(f.read_bytes()).hexdigest()
    assert file_sha256(f, home=home) == real
    memo = next((home / "weights" / ".sha256").glob("*.json"))
    data = json.loads(memo.read_text())
    assert data["sha256"] == real and data["size"] == 3000
    # Proof the memo is used: a planted value comes back while size and mtime are unchanged.
    memo.write_text(json.dumps({**data, "sha256": "f" * 64}))
    assert file_sha256(f, home=home) == "f" * 64
    f.write_bytes(b"abd" * 1000)
    os.utime(f, ns=(data["mtime_ns"] + 10**9, data["mtime_ns"] + 10**9))
    assert file_sha256(f, home=home) == hashlib.sha256(b"abd" * 1000).hexdigest()
    with pytest.raises(UserError, match="file not found"):
        file_sha256(tmp_path / "missing.bin", home=home)


def test_weights_help_does_not_import_torch() -> None:
    code = ("import sys; from robust_style.cli import build_parser; "
            "build_parser().parse_args(['weights', 'download', 'x']); "
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_loopback_http_is_allowed_for_local_mirrors() -> None:
    assert parse_entry(_raw(urls=["http://127.0.0.1:8000/x.pt"])).urls
