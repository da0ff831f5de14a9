"""The committed gRPC stubs are exactly what scripts/gen_protos.py generates from protos/."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
STUBS = REPO / "src" / "robust_style" / "server" / "protos"


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and "__pycache__" not in p.parts}


def test_regenerating_stubs_changes_nothing(tmp_path: Path) -> None:
    pytest.importorskip("grpc_tools")
    out = tmp_path / "protos"
    subprocess.run([sys.executable, str(REPO / "scripts" / "gen_protos.py"), "--out", str(out)],
                   check=True, capture_output=True)
    fresh, committed = _tree(out), _tree(STUBS)
    assert sorted(fresh) == sorted(committed)
    changed = [name for name in fresh if fresh[name] != committed[name]]
    assert not changed, f"stale stubs, run scripts/gen_protos.py: {changed}"


def test_stubs_coexist_with_tritonclient() -> None:
    """Our inference.* messages live in a private pool: tritonclient imports fine too."""
    code = (
        "from tritonclient.grpc import service_pb2 as t\n"
        "from robust_style.server.protos.inference import grpc_service_pb2 as m\n"
        "r = m.ModelInferRequest(model_name='x', raw_input_contents=[b'ab'])\n"
        "r.inputs.add(name='image', datatype='UINT8', shape=[1, 2])\n"
        "back = t.ModelInferRequest.FromString(r.SerializeToString())\n"
        "assert back.inputs[0].shape == [1, 2] and back.raw_input_contents == [b'ab']\n"
    )
    pytest.importorskip("tritonclient.grpc")
    subprocess.run([sys.executable, "-c", code], check=True)
