"""Device mode of the GPU check: run it on a lent machine that has no package registry.

The lent machine (issue 25) has torch, onnx, onnxruntime (CPU), numpy, Pillow, grpcio,
protobuf, prometheus-client, tqdm and opencv, no registry, and takes 64 MiB per call
(working tree + ``carry``). So everything it lacks is prepared here and carried:

* ``prepare`` (here): ``pip download --no-deps`` of the small wheels the machine lacks
  into ``gpu-check/wheelhouse`` and a check that they fit in one call with the checkout.
* ``split`` (here): onnxruntime-gpu (255 MB) cut into pieces that each fit in one call,
  with ``gpu-check/carry/manifest.json`` (sha256 of each piece and of the whole).
* ``piece K`` (there, one call per piece while the machine stays warm): checks the
  carried piece by sha256 and stores it in ``gpu-check/device/pieces`` (ignored: it
  persists between calls while the machine is warm).
* ``measure`` (there): refuses without a GPU (exit 2, one line, nothing installed);
  reassembles and checks the wheel (a bad or missing piece: one line naming it, exit 2,
  unless ``--torch-only``), unpacks the wheels into ``gpu-check/device/site`` (no pip
  needed) and runs ``scripts/gpu_device_measure.py`` section by section, each under its
  own timeout, against the machine's own torch. Report: ``gpu-check/report.md``/``.json``.

    python scripts/gpu_device.py prepare
    python scripts/gpu_device.py split
    python3 scripts/gpu_device.py piece 1     # ... piece N, one per call
    python3 scripts/gpu_device.py measure     # last call
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MIB = 1 << 20
CALL_LIMIT = 64 * MIB  # working tree + carry, per call
GC = REPO / "gpu-check"
WHEELHOUSE = GC / "wheelhouse"
CARRY = GC / "carry"
DEVICE = GC / "device"
ORT_GPU = "onnxruntime-gpu==1.31.1"
# Base and train deps the lent machine lacks (KINDS.md); av and openvino are left out on
# purpose (large): the sections that need them are skipped and say so.
WHEELS = ["grpc-interceptor>=0.15", "platformdirs>=3.0", "grpcio-health-checking==1.85.1",
          "grpcio-reflection==1.85.1", "torchvision==0.26.0"]  # torchvision: torch 2.11's
FP16_MODEL = "models/style-fp16.onnx"  # under the wheelhouse: carried with it
PLATFORMS = ["manylinux_2_28_x86_64", "manylinux_2_17_x86_64", "any"]


class Refused(Exception):
    """One line for stderr; exit 2."""


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(MIB), b""):
            h.update(block)
    return h.hexdigest()


def checkout_bytes(repo: Path = REPO) -> int:
    """Bytes of what each call carries anyway: tracked + untracked non-ignored files."""
    out = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                         cwd=repo, capture_output=True, check=True).stdout
    return sum((repo / p).stat().st_size for p in out.decode().split("\0")
               if p and (repo / p).is_file())


def fits(paths: list[Path], checkout: int, limit: int = CALL_LIMIT) -> tuple[int, bool]:
    """Total bytes of ``paths`` (folders summed) plus the checkout, and whether <= limit."""
    total = checkout
    for p in paths:
        files = [p] if p.is_file() else [f for f in p.rglob("*") if f.is_file()]
        total += sum(f.stat().st_size for f in files)
    return total, total <= limit


def _pip_download(specs: list[str], dest: Path) -> None:
    dest.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:",
           "--python-version", "3.12", "-d", str(dest)]
    for plat in PLATFORMS:
        cmd += ["--platform", plat]
    subprocess.run(cmd + specs, check=True)


def build_fp16_model(dest: Path) -> None:
    """The style network exported as ``robust-style export --fp16`` does (random weights:
    speed does not depend on them); the lent machine has no onnxconverter-common."""
    import onnx
    import torch

    from robust_style.export.fp16 import convert_core_to_fp16
    from robust_style.export.onnx_export import compose_serving, export_core
    from robust_style.transformer_net import TransformerNet

    torch.manual_seed(0)
    dest.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(compose_serving(convert_core_to_fp16(export_core(TransformerNet().eval()))),
              str(dest))


def cmd_prepare(args: argparse.Namespace) -> int:
    if not args.no_download:
        _pip_download(WHEELS, args.wheelhouse)
        build_fp16_model(args.wheelhouse / FP16_MODEL)
        print(f"{(args.wheelhouse / FP16_MODEL).stat().st_size / MIB:8.2f} MiB  {FP16_MODEL}")
    wheels = sorted(args.wheelhouse.glob("*.whl")) if args.wheelhouse.is_dir() else []
    if not wheels:
        raise Refused(f"prepare: no wheels in {args.wheelhouse}")
    for w in wheels:
        print(f"{w.stat().st_size / MIB:8.2f} MiB  {w.name}")
    checkout = checkout_bytes()
    total, ok = fits([args.wheelhouse], checkout)
    print(f"checkout {checkout / MIB:.2f} MiB + wheelhouse = {total / MIB:.2f} MiB "
          f"({'fits' if ok else 'does NOT fit'} in one call's {CALL_LIMIT // MIB} MiB)")
    return 0 if ok else 1


def split(path: Path, out: Path, piece_bytes: int) -> dict:
    """Cut ``path`` into ``out/<name>.partNN`` and write ``out/manifest.json``."""
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("*.part*"):
        old.unlink()
    pieces = []
    with path.open("rb") as f:
        for i, block in enumerate(iter(lambda: f.read(piece_bytes), b""), 1):
            name = f"{path.name}.part{i:02d}"
            (out / name).write_bytes(block)
            pieces.append({"file": name, "size": len(block),
                           "sha256": hashlib.sha256(block).hexdigest()})
    manifest = {"name": path.name, "size": path.stat().st_size, "sha256": sha256(path),
                "pieces": pieces}
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2))
    return manifest


def store_piece(k: int, carried: Path, store: Path) -> str:
    """Check carried piece ``k`` against the manifest and keep it in ``store``."""
    manifest = json.loads((carried / "manifest.json").read_text())
    n = len(manifest["pieces"])
    if not 1 <= k <= n:
        raise Refused(f"piece: {k} is not in 1..{n}")
    ent = manifest["pieces"][k - 1]
    src = carried / ent["file"]
    if not src.is_file() or sha256(src) != ent["sha256"]:
        raise Refused(f"piece {k}/{n} {ent['file']}: missing or sha256 mismatch; carry it again")
    store.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, store / ent["file"])
    shutil.copyfile(carried / "manifest.json", store / "manifest.json")
    have = sum((store / p["file"]).is_file() for p in manifest["pieces"])
    return f"piece {k}/{n} ok ({ent['size'] / MIB:.1f} MiB); {have} of {n} stored"


def reassemble(store: Path, dest: Path) -> Path:
    """Join the stored pieces into ``dest/<name>``; every piece and the whole checked."""
    manifest = json.loads((store / "manifest.json").read_text())
    n = len(manifest["pieces"])
    for k, ent in enumerate(manifest["pieces"], 1):
        p = store / ent["file"]
        if not p.is_file():
            raise Refused(f"reassemble: piece {k}/{n} {ent['file']} missing; run `piece {k}`")
        if p.stat().st_size != ent["size"] or sha256(p) != ent["sha256"]:
            raise Refused(f"reassemble: piece {k}/{n} {ent['file']} sha256 mismatch; "
                          f"run `piece {k}` again")
    dest.mkdir(parents=True, exist_ok=True)
    whole = dest / manifest["name"]
    with whole.open("wb") as f:
        for ent in manifest["pieces"]:
            f.write((store / ent["file"]).read_bytes())
    if sha256(whole) != manifest["sha256"]:
        whole.unlink()
        raise Refused(f"reassemble: {manifest['name']} sha256 mismatch after joining")
    return whole


def cmd_split(args: argparse.Namespace) -> int:
    wheel = args.wheel
    if wheel is None:
        dl = GC / "ortdl"
        found = sorted(dl.glob("onnxruntime_gpu-*.whl")) if dl.is_dir() else []
        if not found:
            _pip_download([ORT_GPU], dl)
            found = sorted(dl.glob("onnxruntime_gpu-*.whl"))
        wheel = found[-1]
    m = split(wheel, args.out, int(args.piece_mib * MIB))
    checkout = checkout_bytes()
    worst = 0
    for k, ent in enumerate(m["pieces"], 1):
        total, ok = fits([args.out / ent["file"], args.out / "manifest.json"], checkout)
        worst = max(worst, total)
        print(f"piece {k}: {ent['size'] / MIB:.2f} MiB  {ent['sha256'][:16]}  "
              f"call {total / MIB:.2f} MiB {'ok' if ok else 'TOO BIG'}")
    print(f"{m['name']}: {m['size'] / MIB:.2f} MiB in {len(m['pieces'])} pieces, "
          f"sha256 {m['sha256']}")
    return 0 if worst <= CALL_LIMIT else 1


def has_gpu() -> bool:
    if not shutil.which("nvidia-smi"):
        return False
    try:
        p = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.SubprocessError):
        return False
    return p.returncode == 0 and any(line.startswith("GPU ") for line in p.stdout.splitlines())


def unpack(wheel: Path, site: Path) -> None:
    """A wheel is a zip: extracting it into ``site`` is an install without pip."""
    with zipfile.ZipFile(wheel) as z:
        z.extractall(site)


def cuda_lib_path(site: Path) -> str:
    """LD_LIBRARY_PATH with the CUDA/cuDNN libraries of the machine's nvidia wheels, for
    the server subprocess (which does not call ``onnxruntime.preload_dlls``)."""
    import site as pysite

    dirs: set[str] = set()
    for sp in [*pysite.getsitepackages(), pysite.getusersitepackages(), str(site)]:
        for pat in ("nvidia/*/lib", "nvidia/*/*/lib", "nvidia/cu13/lib"):
            dirs.update(str(p) for p in Path(sp).glob(pat) if p.is_dir())
    old = os.environ.get("LD_LIBRARY_PATH", "")
    return os.pathsep.join([*sorted(dirs), *([old] if old else [])])


def cmd_measure(args: argparse.Namespace) -> int:
    if not has_gpu():
        raise Refused("gpu_device: no CUDA GPU on this machine (nvidia-smi lists none); "
                      "nothing to check")
    site = DEVICE / "site"
    notes = []
    ort_wheel = None
    if (args.store / "manifest.json").is_file():
        try:
            ort_wheel = reassemble(args.store, DEVICE / "wheel")
        except Refused:
            if not args.torch_only:
                raise
    elif not args.torch_only:
        raise Refused(f"measure: no onnxruntime-gpu pieces in {args.store}; carry them "
                      "(`piece 1..N`) or pass --torch-only")
    if ort_wheel is None:
        notes.append("onnxruntime-gpu not assembled (--torch-only): ORT CUDA sections skipped")
    site.mkdir(parents=True, exist_ok=True)
    for w in sorted(args.wheelhouse.glob("*.whl")) if args.wheelhouse.is_dir() else []:
        unpack(w, site)
    if ort_wheel is not None:
        unpack(ort_wheel, site)
    env = {**os.environ, "LD_LIBRARY_PATH": cuda_lib_path(site),
           "PYTHONPATH": os.pathsep.join([str(site), str(REPO / "src"),
                                                        os.environ.get("PYTHONPATH", "")])}
    cmd = [sys.executable, str(REPO / "scripts/gpu_device_measure.py"), "--out", str(args.out),
           "--budget-s", str(args.budget_s), "--only", args.only]
    for n in notes:
        cmd += ["--note", n]
    return subprocess.run(cmd, env=env, cwd=REPO).returncode


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("prepare", help="download the missing wheels; check the call size")
    p.add_argument("--wheelhouse", type=Path, default=WHEELHOUSE)
    p.add_argument("--no-download", action="store_true",
                   help="only the size check (no downloads, no fp16 model build)")
    p = sub.add_parser("split", help="cut onnxruntime-gpu into pieces + manifest")
    p.add_argument("--wheel", type=Path, help="default: download " + ORT_GPU)
    p.add_argument("--out", type=Path, default=CARRY)
    p.add_argument("--piece-mib", type=float, default=45.0)
    p = sub.add_parser("piece", help="(device) check and store carried piece K")
    p.add_argument("k", type=int)
    p.add_argument("--carried", type=Path, default=CARRY)
    p.add_argument("--store", type=Path, default=DEVICE / "pieces")
    p = sub.add_parser("measure", help="(device) install into a target folder and measure")
    p.add_argument("--store", type=Path, default=DEVICE / "pieces")
    p.add_argument("--wheelhouse", type=Path, default=WHEELHOUSE)
    p.add_argument("--out", type=Path, default=GC)
    p.add_argument("--budget-s", type=int, default=480, help="whole run (default 480)")
    p.add_argument("--only", default="all", help="comma list of sections (default all)")
    p.add_argument("--torch-only", action="store_true",
                   help="measure without onnxruntime-gpu when its pieces are absent")
    return ap


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.cmd == "prepare":
            return cmd_prepare(args)
        if args.cmd == "split":
            return cmd_split(args)
        if args.cmd == "piece":
            print(store_piece(args.k, args.carried, args.store))
            return 0
        return cmd_measure(args)
    except Refused as e:
        print(e, file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
