"""Hot reload: add, replace, remove and corrupt model files while requests run."""

from __future__ import annotations

import os
import shutil
import threading
import time
from pathlib import Path

import grpc
import pytest
from server_fixtures import decode, encode, photo, start_server

from robust_style.server.protos.robust_style.v1 import style_transfer_pb2 as pb
from robust_style.server.protos.robust_style.v1 import style_transfer_pb2_grpc as pb_grpc


def _replace(src: Path, dst: Path) -> None:
    """Copy atomically, as deployments should (temp file + rename)."""
    tmp = dst.with_name(f".{dst.name}.tmp")
    shutil.copy(src, tmp)
    os.replace(tmp, dst)


def _wait(cond, timeout: float = 60.0) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return
        time.sleep(0.05)
    raise AssertionError("condition not reached")


def test_hot_reload_while_requests_run(model_store: Path, tmp_path: Path) -> None:
    models = tmp_path / "models"
    models.mkdir()
    shutil.copy(model_store / "tiny.onnx", models / "tiny.onnx")
    server = start_server(models, poll_seconds=0.1)
    stub = pb_grpc.StyleTransferStub(grpc.insecure_channel(server.address))
    png = encode(photo("chelsea", 64))

    def styles() -> dict[str, str]:
        return {s.name: s.version for s in stub.ListStyles(pb.ListStylesRequest()).styles}

    failures: list[BaseException] = []
    versions_seen: set[str] = set()
    done = {"tiny": 0, "tiny2": 0}
    stop = {"tiny": threading.Event(), "tiny2": threading.Event()}

    def hammer(style: str) -> None:
        while not stop[style].is_set():
            try:
                r = stub.Stylize(pb.StylizeRequest(style=style, image=png), timeout=60)
                assert (r.width, r.height) == (64, 43)
                if style == "tiny":
                    versions_seen.add(r.version)
                done[style] += 1
            except BaseException as exc:
                failures.append(exc)
                return

    threads = {"tiny": threading.Thread(target=hammer, args=("tiny",))}
    threads["tiny"].start()
    try:
        v1 = styles()["tiny"]
        before = decode(stub.Stylize(pb.StylizeRequest(style="tiny", image=png)).image)

        # add
        _replace(model_store / "tiny2.onnx", models / "tiny2.onnx")
        _wait(lambda: "tiny2" in styles())
        t2 = styles()["tiny2"]
        threads["tiny2"] = threading.Thread(target=hammer, args=("tiny2",))
        threads["tiny2"].start()

        # a corrupt new file is skipped and disturbs nothing
        (models / "broken.onnx").write_bytes(b"this is not an onnx model" * 10)
        # replace: same style name, new weights
        _replace(model_store / "tiny_v2.onnx", models / "tiny.onnx")
        _wait(lambda: styles()["tiny"] != v1)
        v2 = styles()["tiny"]
        after = decode(stub.Stylize(pb.StylizeRequest(style="tiny", image=png)).image)
        assert (after != before).any(), "the new weights must be in use"

        # a corrupt replacement keeps the last good version serving
        bad = models / ".tiny.onnx.tmp"
        bad.write_bytes(b"\x08\x07garbage")
        os.replace(bad, models / "tiny.onnx")
        _wait(lambda: server.metrics.reloads.values.get(
            (("style", "tiny"), ("result", "failed")), 0) >= 1)
        assert styles() == {"tiny": v2, "tiny2": t2}

        # remove
        stop["tiny2"].set()
        threads["tiny2"].join()
        (models / "tiny2.onnx").unlink()
        _wait(lambda: "tiny2" not in styles())
        with pytest.raises(grpc.RpcError) as info:
            stub.Stylize(pb.StylizeRequest(style="tiny2", image=png))
        assert info.value.code() == grpc.StatusCode.NOT_FOUND
        n = done["tiny"]
        _wait(lambda: done["tiny"] > n + 2)
    finally:
        for ev in stop.values():
            ev.set()
        for t in threads.values():
            t.join()
        server.stop(0)
    assert not failures, failures[:3]
    assert done["tiny"] > 5 and done["tiny2"] > 0
    assert {v1, v2} <= versions_seen
    failed = server.metrics.reloads.values
    assert failed.get((("style", "broken"), ("result", "failed"))) == 1


def _hammer_until(stub: pb_grpc.StyleTransferStub, png: bytes, stop: threading.Event,
                  versions: list[str], failures: list[BaseException]) -> None:
    while not stop.is_set():
        try:
            versions.append(stub.Stylize(pb.StylizeRequest(style="tiny", image=png),
                                         timeout=60).version)
        except BaseException as exc:
            failures.append(exc)
            return


def test_new_file_takes_over_a_deleted_files_style_and_rename_has_no_gap(
        model_store: Path, tmp_path: Path) -> None:
    """v2 added under another file name (skipped: name taken), v1 deleted -> v2 serves.

    Then ``mv`` of the serving file: the style stays served throughout (no NOT_FOUND).
    """
    models = tmp_path / "models"
    models.mkdir()
    shutil.copy(model_store / "tiny.onnx", models / "tiny.onnx")
    server = start_server(models, poll_seconds=0.05)
    stub = pb_grpc.StyleTransferStub(grpc.insecure_channel(server.address))
    png = encode(photo("chelsea", 32))

    def files() -> dict[str, str]:
        return {s.name: s.file for s in stub.ListStyles(pb.ListStylesRequest()).styles}

    stop, versions, failures = threading.Event(), [], []
    worker = threading.Thread(target=_hammer_until, args=(stub, png, stop, versions, failures))
    worker.start()
    try:
        v1 = stub.ListStyles(pb.ListStylesRequest()).styles[0].version
        _replace(model_store / "tiny_v2.onnx", models / "tiny_v2.onnx")
        _wait(lambda: server.registry.scanned.is_set() and "tiny_v2.onnx" in
              server.registry.files_seen())
        assert files() == {"tiny": "tiny.onnx"}
        (models / "tiny.onnx").unlink()
        _wait(lambda: files() == {"tiny": "tiny_v2.onnx"})
        n = len(versions)
        _wait(lambda: len(versions) > n + 2)
        os.rename(models / "tiny_v2.onnx", models / "renamed.onnx")
        _wait(lambda: files() == {"tiny": "renamed.onnx"})
        n = len(versions)
        _wait(lambda: len(versions) > n + 2)
    finally:
        stop.set()
        worker.join()
        server.stop(0)
    assert not failures, failures[:3]
    assert v1 in versions and versions[-1] != v1


def test_invalid_style_name_is_skipped_and_corrupt_first_file_does_not_pin_providers(
        model_store: Path, tmp_path: Path) -> None:
    from server_fixtures import new_version

    from robust_style.server.registry import ModelRegistry, RegistryConfig

    models = tmp_path / "models"
    models.mkdir()
    (models / "a_broken.onnx").write_bytes(b"not a model" * 10)
    registry = ModelRegistry(RegistryConfig(models_dir=models, poll_seconds=0, warmup_side=16))
    try:
        registry.scan()
        assert registry.styles() == []
        assert not registry.providers_probed, "a corrupt file must not decide the providers"
        new_version(model_store / "tiny.onnx", models / "evil.onnx", name="../../evil",
                    factor=1.0)
        shutil.copy(model_store / "tiny2.onnx", models / "tiny2.onnx")
        registry.scan()
        assert [m.name for m in registry.styles()] == ["tiny2"]
        assert registry.providers_probed
        failed = registry.metrics.reloads.values
        assert failed.get((("style", "evil"), ("result", "failed"))) == 1
    finally:
        registry.stop()


@pytest.mark.parametrize("then_delete", ["a.onnx", "b.onnx"])
def test_file_rewritten_to_a_taken_name_leaves_no_orphan(model_store: Path, tmp_path: Path,
                                                         then_delete: str) -> None:
    """a.onnx ("tiny") is rewritten to claim "tiny2", which b.onnx serves: skipped, and
    its old style "tiny" goes when a.onnx is deleted or takes over "tiny2" from b.onnx."""
    from server_fixtures import new_version

    from robust_style.server.registry import ModelRegistry, RegistryConfig

    models = tmp_path / "models"
    models.mkdir()
    shutil.copy(model_store / "tiny.onnx", models / "a.onnx")
    shutil.copy(model_store / "tiny2.onnx", models / "b.onnx")
    registry = ModelRegistry(RegistryConfig(models_dir=models, poll_seconds=0, warmup_side=16))

    def served() -> dict[str, str]:
        return {m.name: m.file for m in registry.styles()}

    try:
        registry.scan()
        assert served() == {"tiny": "a.onnx", "tiny2": "b.onnx"}
        new_version(model_store / "tiny.onnx", models / "a.onnx", name="tiny2", factor=2.0)
        registry.scan()
        assert served() == {"tiny": "a.onnx", "tiny2": "b.onnx"}  # previous version serves on
        (models / then_delete).unlink()
        registry.scan()
        left = "b.onnx" if then_delete == "a.onnx" else "a.onnx"
        assert served() == {"tiny2": left}
        assert registry.metrics.models.values[()] == 1
    finally:
        registry.stop()
