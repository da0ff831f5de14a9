#!/usr/bin/env python
"""Generate the Python gRPC stubs in ``src/robust_style/server/protos`` from ``protos/``.

Run from anywhere: ``python scripts/gen_protos.py`` (needs grpcio-tools, a dev
dependency). ``--out DIR`` writes elsewhere (the test regenerates into a temp dir and
compares bytes with the committed files).

Two deterministic post-processing steps on protoc's output:

* imports: protoc writes ``from inference import grpc_service_pb2``; the stubs live in
  the package ``robust_style.server.protos``, so imports are made absolute;
* descriptor pool: the messages are registered in a private pool
  (``robust_style.server.protos.POOL``), not protobuf's default pool. Triton's own
  ``tritonclient`` registers the same ``inference.*`` symbols in the default pool, and two
  files defining one symbol cannot share a pool; with a private pool the server, the
  client and tritonclient work in one process. Wire format is unaffected.
"""

from __future__ import annotations

import argparse
import re
import shutil
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PROTO_ROOT = REPO / "protos"
DEFAULT_OUT = REPO / "src" / "robust_style" / "server" / "protos"
PACKAGE = "robust_style.server.protos"
PROTOS = ["inference/model_config.proto", "inference/grpc_service.proto",
          "robust_style/v1/style_transfer.proto"]

INIT_TEMPLATE = '''"""Generated gRPC stubs (by scripts/gen_protos.py from protos/; do not edit).

All messages live in :data:`POOL`, a private descriptor pool, so these stubs can share a
process with ``tritonclient`` (which registers the same ``inference.*`` names in
protobuf's default pool).
"""

from google.protobuf import descriptor_pool as _descriptor_pool

POOL = _descriptor_pool.DescriptorPool()

__all__ = ["POOL"]
'''

SUB_INIT = '"""Generated package (scripts/gen_protos.py)."""\n'


def _postprocess(text: str, module: str) -> str:
    # Absolute imports of sibling generated modules.
    text = re.sub(r"^from (inference|robust_style\.v1) import ",
                  lambda m: f"from {PACKAGE}.{m.group(1)} import ", text, flags=re.M)
    # Private descriptor pool.
    if "_descriptor_pool.Default().AddSerializedFile(" in text:
        text = text.replace("_descriptor_pool.Default().AddSerializedFile(",
                            "_POOL.AddSerializedFile(")
        text = text.replace("# @@protoc_insertion_point(imports)\n",
                            f"# @@protoc_insertion_point(imports)\nfrom {PACKAGE} import POOL as _POOL\n",
                            1)
    # Message classes report their real module.
    text = re.sub(r"_builder\.BuildTopDescriptorsAndMessages\(DESCRIPTOR, '([\w.]+)'",
                  lambda m: f"_builder.BuildTopDescriptorsAndMessages(DESCRIPTOR, '{module}'",
                  text)
    return text


def generate(out: Path) -> list[Path]:
    """Generate all stubs into ``out`` (replacing it); return the files written."""
    from grpc_tools import protoc

    with tempfile.TemporaryDirectory() as tmp:
        well_known = Path(protoc.__file__).parent / "_proto"
        args = ["grpc_tools.protoc", f"-I{PROTO_ROOT}", f"-I{well_known}",
                f"--python_out={tmp}", f"--pyi_out={tmp}", f"--grpc_python_out={tmp}", *PROTOS]
        if protoc.main(args) != 0:
            raise RuntimeError("protoc failed")
        if out.exists():
            shutil.rmtree(out)
        out.mkdir(parents=True)
        written = []
        (out / "__init__.py").write_text(INIT_TEMPLATE)
        written.append(out / "__init__.py")
        for src in sorted(Path(tmp).rglob("*")):
            if not src.is_file():
                continue
            rel = src.relative_to(tmp)
            dst = out / rel
            dst.parent.mkdir(parents=True, exist_ok=True)
            module = f"{PACKAGE}." + ".".join(rel.with_suffix("").parts)
            dst.write_text(_postprocess(src.read_text(), module))
            written.append(dst)
        for d in sorted(p for p in out.rglob("*") if p.is_dir()):
            init = d / "__init__.py"
            if not init.exists():
                init.write_text(SUB_INIT)
                written.append(init)
    return sorted(written)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    for path in generate(args.out):
        sys.stdout.write(f"wrote {path}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
