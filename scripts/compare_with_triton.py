#!/usr/bin/env python
"""Ask the real Triton Inference Server and robust-style the same KServe questions.

The reference is the ``tritonserver`` 2.51 binary that PyPI's ``nvidia-pytriton==0.7.0``
bundles, in explicit model-control mode, with a model repository holding our export of
the bundled style (``robust-style export --triton-repo`` layout). That Triton has only the
Python backend (whose stub does not start with this machine's Python), so the style stays
UNAVAILABLE there: the questions show how Triton reports a model that failed to load and
the status codes of the error cases (unknown model or version, failed load, unload),
over gRPC (``tritonclient``) and over KServe v2 REST (status code and ``{"error": ...}``),
beside robust-style's answers for the same calls, as a Markdown table. Run it from a venv with pytriton (it brings tritonclient); our server is started
with ``--ours-python`` (a Python that has robust-style and its base dependencies)::

    python -m venv /tmp/pt && /tmp/pt/bin/pip install nvidia-pytriton==0.7.0 \
        grpcio-health-checking "protobuf==<the version in .venv>"
    PYTHONPATH=src /tmp/pt/bin/python scripts/compare_with_triton.py --ours-python .venv/bin/python

(``PYTHONPATH=src`` and those two packages: the script starts our server with
``netutil.serve_process``, which waits on our gRPC health check and our protos.)
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def _ask(fn: Callable[[], Any]) -> str:
    """The answer, or the error's gRPC status and the start of its message."""
    from tritonclient.utils import InferenceServerException

    try:
        out = fn()
    except InferenceServerException as exc:
        status = str(exc.status() or "").replace("StatusCode.", "")
        return f"**{status}**: {(exc.message() or '')[:90]}"
    return "OK" if out is None else str(out)


def probes(url: str, model: str) -> dict[str, str]:
    import tritonclient.grpc as tc

    c = tc.InferenceServerClient(url)
    x = np.zeros((1, 256, 256, 3), np.uint8)
    inp = tc.InferInput("image", list(x.shape), "UINT8")
    inp.set_data_from_numpy(x)
    out: dict[str, str] = {}
    out["extensions"] = _ask(lambda: sorted(c.get_server_metadata().extensions))
    out["metadata versions / platform"] = _ask(
        lambda: (list(c.get_model_metadata(model).versions), c.get_model_metadata(model).platform))
    out["metadata input shape"] = _ask(lambda: list(c.get_model_metadata(model).inputs[0].shape))

    def config() -> str:
        cfg = c.get_model_config(model).config
        return (f"platform={cfg.platform!r} backend={cfg.backend!r} "
                f"max_batch_size={cfg.max_batch_size} dims={list(cfg.input[0].dims)} "
                f"dynamic_batching={cfg.HasField('dynamic_batching')} "
                f"version_policy={cfg.version_policy.WhichOneof('policy_choice')}")

    out["config"] = _ask(config)
    out["infer 1x256x256x3"] = _ask(lambda: c.infer(model, [inp]).as_numpy("stylized").shape)

    def stats() -> str:
        s = c.get_inference_statistics(model).model_stats[0]
        st = s.inference_stats
        return (f"version={s.version!r} inference_count={s.inference_count} "
                f"execution_count={s.execution_count} success={st.success.count} "
                f"queue={st.queue.count} compute_input/infer/output="
                f"{st.compute_input.count}/{st.compute_infer.count}/{st.compute_output.count}")

    out["statistics after 1 request"] = _ask(stats)
    out["statistics, no name"] = _ask(
        lambda: sorted(m.name for m in c.get_inference_statistics().model_stats))
    out["index"] = _ask(lambda: [(m.name, m.version, m.state, m.reason)
                                 for m in c.get_model_repository_index().models])
    out["config of unknown model"] = _ask(lambda: c.get_model_config("nope"))
    out["metadata, unknown version 7"] = _ask(lambda: c.get_model_metadata(model, "7"))
    out["statistics of unknown model"] = _ask(lambda: c.get_inference_statistics("nope"))
    out["infer unknown model"] = _ask(lambda: c.infer("nope", [inp]))
    out["load unknown model"] = _ask(lambda: c.load_model("nope"))
    out["unload unknown model"] = _ask(lambda: c.unload_model("nope"))
    out["unload"] = _ask(lambda: c.unload_model(model))
    time.sleep(1.0)
    out["index after unload"] = _ask(lambda: [(m.name, m.version, m.state, m.reason)
                                              for m in c.get_model_repository_index().models])
    out["infer after unload"] = _ask(lambda: c.infer(model, [inp]))
    out["load again"] = _ask(lambda: c.load_model(model))
    out["versions after reload"] = _ask(lambda: list(c.get_model_metadata(model).versions))
    return out


def http_probes(base: str, model: str) -> dict[str, str]:
    """The same kind of questions over KServe v2 REST: status code and body (errors are
    ``{"error": "..."}`` in Triton's HTTP API)."""
    import json
    import urllib.error
    import urllib.request

    def ask(method: str, path: str, body: dict | None = None) -> str:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(base + path, data=data, method=method,
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=60) as r:
                code, text = r.status, r.read().decode("utf-8", "replace")
        except urllib.error.HTTPError as exc:
            code, text = exc.code, exc.read().decode("utf-8", "replace")
        try:
            parsed = json.loads(text) if text else None
        except ValueError:
            parsed = text
        if isinstance(parsed, dict) and "error" in parsed:
            return f"**{code}** error: {str(parsed['error'])[:80]}"
        return f"{code}" + (f" keys={sorted(parsed)}" if isinstance(parsed, dict) else "")

    zeros = {"inputs": [{"name": "image", "shape": [1, 4, 4, 3], "datatype": "UINT8",
                         "data": [0] * 48}]}
    wrong = {"inputs": [{"name": "image", "shape": [1, 4, 4, 3], "datatype": "FP32",
                         "data": [0.0] * 48}]}
    return {
        "HTTP GET /v2/health/ready": ask("GET", "/v2/health/ready"),
        "HTTP GET /v2": ask("GET", "/v2"),
        "HTTP model ready, unknown model": ask("GET", "/v2/models/nope/ready"),
        "HTTP config of unknown model": ask("GET", "/v2/models/nope/config"),
        "HTTP metadata, unknown version 7": ask("GET", f"/v2/models/{model}/versions/7"),
        "HTTP statistics of unknown model": ask("GET", "/v2/models/nope/stats"),
        "HTTP infer unknown model": ask("POST", "/v2/models/nope/infer", zeros),
        "HTTP infer wrong datatype": ask("POST", f"/v2/models/{model}/infer", wrong),
        "HTTP infer malformed JSON body": ask("POST", f"/v2/models/{model}/infer", {"x": 1}),
        "HTTP load unknown model": ask("POST", "/v2/repository/models/nope/load", {}),
        "HTTP unload unknown model": ask("POST", "/v2/repository/models/nope/unload", {}),
        "HTTP repository index": ask("POST", "/v2/repository/index", {}),
    }


def triton_answers(python: str, tmp: Path) -> dict[str, str]:
    """Triton with our export of the bundled style (``robust-style export --triton-repo``
    layout); the pip Triton has no ONNX Runtime backend, so the model is UNAVAILABLE and
    the questions show how Triton reports that."""
    import pytriton

    root = Path(pytriton.__file__).parent / "tritonserver"
    repo = tmp / "repo"
    code = ("import sys; from pathlib import Path; from robust_style.export.triton import "
            "write_triton_entry; write_triton_entry(sys.argv[1], 'the-scream', "
            "Path(sys.argv[2]).read_bytes())")
    subprocess.run([python, "-c", code, str(repo),
                    str(REPO / "src" / "robust_style" / "models" / "the-scream.onnx")],
                   check=True, env={**os.environ, "PYTHONPATH": str(REPO / "src")})
    libs = Path(pytriton.__file__).parents[1] / "nvidia_pytriton.libs"
    env = {**os.environ, "LD_LIBRARY_PATH": os.pathsep.join(
        p for p in (str(libs), os.environ.get("LD_LIBRARY_PATH")) if p)}
    from robust_style.netutil import free_port  # the one helper (tests use it too)

    port, http = free_port(), free_port()
    proc = subprocess.Popen([str(root / "bin" / "tritonserver"), f"--model-repository={repo}",
                             "--model-control-mode=explicit", f"--grpc-port={port}",
                             "--allow-http=true", f"--http-port={http}",
                             "--allow-metrics=false",
                             f"--backend-directory={root / 'backends'}"],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        import tritonclient.grpc as tc

        client = tc.InferenceServerClient(f"127.0.0.1:{port}")
        _wait(client)
        first = _ask(lambda: client.load_model("the-scream"))
        out = probes(f"127.0.0.1:{port}", "the-scream")
        return {"load the exported style": first, **out,
                **http_probes(f"http://127.0.0.1:{http}", "the-scream")}
    finally:
        proc.terminate()
        proc.wait(60)


def _wait(client: Any) -> None:
    for _ in range(300):
        try:
            if client.is_server_live():
                return
        except Exception:
            pass
        time.sleep(0.2)


def our_answers(python: str) -> dict[str, str]:
    import tritonclient.grpc as tc

    from robust_style.netutil import free_port, serve_process  # the one helpers

    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    http = free_port()
    with serve_process(["--http-port", str(http)], command=[python, "-m", "robust_style"],
                       env=env) as served:
        client = tc.InferenceServerClient(served.target)
        first = _ask(lambda: client.load_model("the-scream"))
        return {"load the exported style": first, **probes(served.target, "the-scream"),
                **http_probes(f"http://127.0.0.1:{http}", "the-scream")}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ours-python", default=sys.executable,
                        help="Python with robust-style's base dependencies")
    args = parser.parse_args()
    ours = our_answers(args.ours_python)
    with tempfile.TemporaryDirectory() as tmp:
        ref = triton_answers(args.ours_python, Path(tmp))
    print("| question | Triton 2.51 (from nvidia-pytriton 0.7.0) | robust-style |")
    print("|---|---|---|")
    for key in ref:
        clean = [str(v).replace("|", "\\|").replace("\n", " ") for v in (ref[key], ours[key])]
        print(f"| {key} | {clean[0]} | {clean[1]} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
