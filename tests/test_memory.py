"""The memory budget (issue 22): a real server under a budget, real engines, real photos.

A photo whose untiled run does not fit the budget runs tiled with the untiled output;
concurrent requests wait for memory instead of overcommitting; idle styles' engines are
evicted least-recently-used and reloaded; what can never fit is RESOURCE_EXHAUSTED with
the numbers; a budget too small for one tile refuses to start, in one line.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from server_fixtures import decode, encode, new_version, photo

from robust_style.cli import main
from robust_style.netutil import free_port
from robust_style.pixels import psnr
from robust_style.server.app import ServerConfig, StyleServer
from robust_style.server.batching import BatchConfig
from robust_style.server.client import ClientError, StyleClient
from robust_style.server.dataplane import Limits
from robust_style.server.engines import EngineConfig
from robust_style.server.local import LocalStylizer
from robust_style.server.memory import (
    BudgetedEngine,
    MemoryBudget,
    cgroup_limit,
    parse_size,
    rss,
)
from robust_style.server.registry import EVICTED, RegistryConfig

ENGINE = EngineConfig(engine="onnxruntime", precision="fp32")
MIB = 1 << 20


def _server(models: Path, budget: int, max_pixels: int = 20_000_000) -> StyleServer:
    reg = RegistryConfig(models_dir=models, engine=ENGINE, batch=BatchConfig(max_batch=1),
                         poll_seconds=0.0, warmup_side=32, memory_budget=budget)
    server = StyleServer(ServerConfig(registry=reg, port=0, metrics_port=None,
                                      limits=Limits(max_pixels=max_pixels),
                                      max_message_bytes=64 * MIB)).start()
    assert server.wait_ready(120)
    return server


def _big_photo(w: int, h: int) -> np.ndarray:
    return np.asarray(Image.fromarray(photo("coffee", 400)).resize((w, h), Image.BILINEAR))


@pytest.fixture()
def budget_server(models_dir: Path) -> Iterator[StyleServer]:
    s = _server(models_dir, rss() + 60 * MIB)
    yield s
    s.stop(0)


def test_parse_size_and_cgroup_limits(tmp_path: Path) -> None:
    assert parse_size("4G") == 4 << 30 and parse_size("3500M") == 3500 << 20
    assert parse_size("512MiB") == 512 << 20 and parse_size("1.5GB") == 3 << 29
    assert parse_size("1024") == 1024
    with pytest.raises(ValueError, match="not a size"):
        parse_size("lots")
    # v1: memory controller line, limit in memory/<path>/memory.limit_in_bytes
    (tmp_path / "memory" / "svc").mkdir(parents=True)
    (tmp_path / "memory" / "svc" / "memory.limit_in_bytes").write_text("4294967296\n")
    (tmp_path / "memory" / "memory.limit_in_bytes").write_text("9223372036854771712\n")
    proc = tmp_path / "cgroup"
    proc.write_text("5:cpu:/\n4:memory:/svc\n")
    assert cgroup_limit(proc, tmp_path) == 4 << 30
    # v2: the unified line, memory.max ("max" = none)
    (tmp_path / "app").mkdir()
    (tmp_path / "app" / "memory.max").write_text("3221225472\n")
    (tmp_path / "memory.max").write_text("max\n")
    proc.write_text("0::/app\n")
    assert cgroup_limit(proc, tmp_path) == 3 << 30
    proc.write_text("0::/\n")
    assert cgroup_limit(proc, tmp_path) is None


def test_large_photo_runs_tiled_with_the_untiled_output(budget_server: StyleServer,
                                                       models_dir: Path) -> None:
    """~1 MP needs ~300 MB untiled on the tiny style; the budget leaves 60 MB: tiled."""
    x = _big_photo(1101, 903)
    with StyleClient(budget_server.address) as client:
        got = decode(client.stylize(encode(x), "tiny").image)
    model, _ = budget_server.plane.lookup("tiny")
    assert isinstance(model.engine, BudgetedEngine) and model.engine.runs["tiled"] == 1
    local = LocalStylizer(models_dir / "tiny.onnx", engine=ENGINE, memory_budget=-1)
    try:
        want = decode(local.stylize(encode(x), "tiny").image)
    finally:
        local.close()
    db = psnr(got, want)
    assert db >= 40.0, db
    resident, reserved = budget_server.registry.memory.used()  # type: ignore[union-attr]
    assert reserved == 0 and resident <= budget_server.registry.memory.capacity  # type: ignore[union-attr]


def test_never_fits_is_resource_exhausted_with_the_numbers(budget_server: StyleServer) -> None:
    """12 MP: its input and output alone (72 MB) exceed what the budget leaves (60 MB)."""
    x = np.zeros((3000, 4000, 3), np.uint8)
    with StyleClient(budget_server.address) as client, pytest.raises(ClientError) as info:
        client.stylize(encode(x), "tiny")
    msg = str(info.value)
    assert "RESOURCE_EXHAUSTED" in msg and "needs at least" in msg and "MiB" in msg, msg
    with StyleClient(budget_server.address) as client:  # still alive, still answering
        assert decode(client.stylize(encode(photo("chelsea", 64)), "tiny").image).shape[2] == 3


def test_concurrent_requests_wait_for_memory_never_overcommit(budget_server: StyleServer
                                                              ) -> None:
    """Three concurrent photos of two styles, each needing most of the budget: all answered,
    and the reserved memory never exceeded the budget."""
    memory = budget_server.registry.memory
    assert memory is not None
    peak = [0]
    stop = threading.Event()

    def watch() -> None:
        while not stop.is_set():
            peak[0] = max(peak[0], sum(memory.used()))
            time.sleep(0.002)

    watcher = threading.Thread(target=watch)
    watcher.start()
    data = encode(_big_photo(700, 500))
    try:
        with StyleClient(budget_server.address) as client, ThreadPoolExecutor(3) as pool:
            outs = list(pool.map(lambda s: client.stylize(data, s), ["tiny", "tiny2", "tiny"]))
    finally:
        stop.set()
        watcher.join()
    assert all(decode(o.image).shape == (500, 700, 3) for o in outs)
    assert 0 < peak[0] <= memory.capacity


def test_budget_too_small_refuses_to_start_in_one_line(models_dir: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["serve", "--models", str(models_dir), "--memory-budget", "1M", "--port", "0",
                 "--metrics-port", "-1", "--poll-seconds", "0", "--engine", "onnxruntime"])
    assert code == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.startswith("robust-style: error: memory budget 1 MiB is too small"), last
    assert "needs at least" in last


def test_many_styles_in_a_small_budget_evicted_lru_all_served(model_store: Path,
                                                              tmp_path: Path) -> None:
    """12 styles in a budget holding only a few engines: each asked once, all served;
    engines evicted least-recently-used and reloaded; RepositoryIndex says which."""
    d = tmp_path / "many"
    d.mkdir()
    shutil.copy(model_store / "tiny.onnx", d / "tiny.onnx")
    for i in range(1, 12):
        new_version(model_store / "tiny.onnx", d / f"s{i:02d}.onnx", name=f"s{i:02d}",
                    factor=1.0 + i / 10)
    side = 256
    server = _few_engines_server(d, side, engines=3)
    try:
        memory = server.registry.memory
        assert memory is not None
        names = sorted(m.name for m in server.registry.styles())
        assert len(names) == 12
        data = encode(photo("astronaut", side))
        with StyleClient(server.address) as client:
            for name in names:
                assert decode(client.stylize(data, name).image).shape[:2] == (side, side)
        assert memory.evictions > 0
        evicted = [m.name for m in server.registry.index() if m.reason == EVICTED]
        assert names[0] in evicted and names[-1] not in evicted  # least recently used first
        resident, reserved = memory.used()
        assert resident <= memory.capacity and reserved == 0
        reloads = sum(m.engine.runs["reloads"] for m in server.registry.styles())  # type: ignore[attr-defined]
        assert reloads > 0
        assert rss() - memory.baseline < memory.capacity + 150 * MIB  # + allocator slack
    finally:
        server.stop(0)


def _few_engines_server(models: Path, side: int, engines: int) -> StyleServer:
    """A server whose budget holds one ``side``² run and ``engines`` engines, by its own
    measure. Resident sizes are measured at load (an RSS delta) and the baseline is the
    RSS when the budget is made, both of which drift from server to server in a long
    suite; so the server starts with room for every style and its capacity is then cut,
    as an operator's smaller budget would be, to what its own figures say holds about
    ``engines`` (the budget evicts idle engines LRU when a run needs the room)."""
    server = _server(models, rss() + 4096 * MIB)
    memory = server.registry.memory
    assert memory is not None
    budgeted = [m.engine for m in server.registry.styles()]
    assert len(budgeted) == len(list(models.glob("*.onnx")))
    assert all(isinstance(e, BudgetedEngine) for e in budgeted)
    sizes = sorted(e.profile.resident for e in budgeted)  # type: ignore[union-attr]
    work = budgeted[0].plan(1, side, side).reserve  # type: ignore[union-attr]
    # room for the largest engine (the first load also measures the runtime's own start)
    # and ``engines - 1`` of the smallest: any style can run, few stay loaded
    memory.capacity = work + sizes[-1] + (engines - 1) * sizes[0]
    assert work + sum(sizes) > memory.capacity, (sizes, work)  # not every engine fits
    return server


CGROUP_V1 = Path("/sys/fs/cgroup/memory")


@pytest.mark.slow
@pytest.mark.skipif(not (CGROUP_V1 / "cgroup.procs").exists() or os.geteuid() != 0,
                    reason="needs root and a cgroup v1 memory controller")
def test_real_server_in_a_memory_cgroup_answers_large_photos(models_dir: Path,
                                                             tmp_path: Path) -> None:
    """The real ``robust-style serve`` in a 1.5 GB memory cgroup (its default budget read
    from the cgroup): a 6 MP photo of the tiny style (~1.8 GB untiled) and two concurrent
    3 MP ones are all answered, tiled, and the kernel kills nothing."""
    group = CGROUP_V1 / f"robust-style-test-{os.getpid()}"
    group.mkdir()
    port = free_port()
    proc: subprocess.Popen[str] | None = None
    try:
        (group / "memory.limit_in_bytes").write_text(str(1536 * MIB))
        with contextlib.suppress(OSError):
            (group / "memory.memsw.limit_in_bytes").write_text(str(1536 * MIB))
        env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src")}
        code = (f"import os; open('{group}/cgroup.procs','w').write(str(os.getpid())); "
                "from robust_style.cli import main; raise SystemExit(main())")
        proc = subprocess.Popen(
            [sys.executable, "-c", code, "serve", "--models", str(models_dir), "--port",
             str(port), "--metrics-port", "-1", "--poll-seconds", "0", "--engine",
             "onnxruntime", "--warmup-side", "32"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
        address = f"127.0.0.1:{port}"
        big, mid = encode(_big_photo(3000, 2000)), encode(_big_photo(2000, 1500))
        with StyleClient(address, timeout=600) as client:
            for _ in range(240):  # both styles loaded (each measures its memory first)
                try:
                    if {"tiny", "tiny2"} <= {s.name for s in client.list_styles()}:
                        break
                except ClientError:
                    pass
                time.sleep(0.5)
            assert decode(client.stylize(big, "tiny").image).shape == (2000, 3000, 3)
            with ThreadPoolExecutor(2) as pool:
                outs = list(pool.map(lambda s: client.stylize(mid, s), ["tiny", "tiny2"]))
        assert all(decode(o.image).shape == (1500, 2000, 3) for o in outs)
        assert proc.poll() is None, "the server died"
        assert int((group / "memory.failcnt").read_text()) >= 0
        assert "oom_kill 0" in (group / "memory.oom_control").read_text()
    finally:
        if proc is not None:
            proc.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(30)
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        for _ in range(50):
            try:
                group.rmdir()
                break
            except OSError:
                time.sleep(0.1)


@pytest.mark.slow
def test_openvino_styles_at_1024_evict_what_their_compiled_models_keep(tmp_path: Path) -> None:
    """OpenVINO's compiled model keeps the working memory of the largest shape it ran
    (~550 MiB after 1024² for the bundled network) until it is dropped: the budget counts
    it as resident, so five copies of the bundled style, each asked once at 1024², are all
    served in a budget of about two of them, by evicting, and RSS stays near the budget."""
    from importlib import resources

    bundled = Path(str(resources.files("robust_style") / "models" / "the-scream.onnx"))
    d = tmp_path / "catalogue"
    d.mkdir()
    for i in range(5):
        new_version(bundled, d / f"v{i}.onnx", name=f"v{i}", factor=1.0)
    reg = RegistryConfig(models_dir=d, engine=EngineConfig(engine="openvino", precision="fp32"),
                         batch=BatchConfig(max_batch=1), poll_seconds=0.0, warmup_side=32,
                         memory_budget=rss() + 1500 * MIB)
    server = StyleServer(ServerConfig(registry=reg, port=0, metrics_port=None,
                                      max_message_bytes=64 * MIB)).start()
    try:
        assert server.wait_ready(300)
        memory = server.registry.memory
        assert memory is not None
        data = encode(photo("astronaut", 1024))
        with StyleClient(server.address, timeout=300) as client:
            for i in range(5):
                assert decode(client.stylize(data, f"v{i}").image).shape[:2] == (1024, 1024)
                assert rss() - memory.baseline < memory.capacity + 400 * MIB, \
                    f"after v{i}: RSS {rss() >> 20} MiB, {memory.describe()}"
        assert memory.evictions >= 2
        assert max(e.retained for e in (m.engine for m in server.registry.styles())  # type: ignore[attr-defined]
                   if e.loaded) > 256 * MIB  # what a 1024² run keeps is counted
    finally:
        server.stop(0)


@pytest.mark.parametrize("engine", ["onnxruntime", "openvino"])
def test_planner_runs_the_low_resolution_middle_whole_where_it_fits(engine: str) -> None:
    """A photo too large to run whole in the budget: where the network's 1/2- or
    1/4-resolution middle fits whole, the plan runs it so (its ends tiled) and the output
    is the untiled one; in a budget too tight for that, every segment is tiled."""
    from importlib import resources

    from robust_style.server.engines import EngineSelector, openvino_status
    from robust_style.server.registry.style_model import load_style

    if engine == "openvino" and not openvino_status().available:
        pytest.skip("OpenVINO unavailable here")
    data = (resources.files("robust_style") / "models" / "the-scream.onnx").read_bytes()
    style = load_style(data, EngineSelector(EngineConfig(engine=engine, precision="fp32")),
                       budget=MemoryBudget(rss() + (8 << 30)), warmup_side=32)
    budgeted = style.engine
    assert isinstance(budgeted, BudgetedEngine) and budgeted.split is not None
    x = photo("astronaut", 640)[None, :480, :600]
    x = np.ascontiguousarray(x)
    h, w = x.shape[1:3]
    want = budgeted.run(x)  # fits untiled in 8 GiB
    assert budgeted.runs["untiled"] == 1
    resident = budgeted.profile.resident
    io = h * w * 3 * 2
    untiled = budgeted.profile.working(h * w) + io
    tried = 0
    for group in budgeted.split.groups:  # room for the group whole, beside the buffers
        live = budgeted.split.live_bytes(1, h, w, group)
        whole = budgeted.group_working(group, 1, h, w)
        assert whole is not None  # measured at load
        budgeted.budget.capacity = resident + io + max(
            budgeted.tile_working(1, 384) + max(live), whole + live[group[0]])
        if untiled <= budgeted.budget.capacity - resident:
            continue  # this group whole costs as much as the network whole here
        tried += 1
        plan = budgeted.plan(1, h, w)
        assert plan.tiled and plan.group is not None
        assert budgeted.split.groups[plan.group][1] <= budgeted.split.groups[group][1]
        got = budgeted.run(x)
        assert psnr(got, want) >= 40.0
    assert tried >= 1
    budgeted.budget.capacity = resident + 3 * budgeted.tile_working(1, 64) + io
    plan = budgeted.plan(1, h, w)
    assert plan.tiled and plan.group is None
    assert psnr(budgeted.run(x), want) >= 40.0
    assert budgeted.runs["tiled"] == tried + 1
