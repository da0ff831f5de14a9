"""``robust-style serve``: serve style models over gRPC (own API + KServe v2) and HTTP."""

from __future__ import annotations

import argparse
import logging
import os
from importlib import resources
from pathlib import Path

from robust_style.contract import MAX_PIXELS, parse_dims
from robust_style.errors import UserError
from robust_style.server import TOKEN_ENV

__all__ = ["register", "default_models_dir", "default_trt_cache_dir"]

log = logging.getLogger(__name__)


def default_models_dir() -> Path:
    """The package's bundled models (``robust_style/models``)."""
    return Path(str(resources.files("robust_style") / "models"))


def default_trt_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/robust-style/trt`` (XDG Base Directory spec), else ``~/.cache/...``.

    Building a TensorRT engine takes minutes; with the cache a restart takes seconds.
    """
    base = os.environ.get("XDG_CACHE_HOME") or ""
    root = Path(base) if os.path.isabs(base) else Path.home() / ".cache"
    return root / "robust-style" / "trt"


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "serve", help="serve style models over gRPC and HTTP (robust_style.v1 + KServe v2)",
        description="Serve every *.onnx style model in a directory over gRPC: the "
        "robust_style.v1.StyleTransfer API, the KServe v2 inference protocol (tritonclient), "
        "grpc.health.v1 and reflection; KServe v2 REST, an image endpoint and a web page on "
        "HTTP; Prometheus metrics. Hot-reloads the "
        "directory. SIGTERM/SIGINT shut down gracefully.")
    p.add_argument("--models", type=Path, default=None,
                   help="directory of *.onnx style models (default: the bundled models)")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default 127.0.0.1; 0.0.0.0 for all interfaces)")
    p.add_argument("--port", type=int, default=8001, help="gRPC port (default 8001; 0 = any)")
    p.add_argument("--http-port", type=int, default=8000,
                   help="HTTP port: KServe v2 REST, the image endpoint /v1/styles and the web "
                   "page at / (default 8000; 0 = any; -1 = off)")
    p.add_argument("--cors-origin", action="append", default=[], metavar="ORIGIN",
                   help="let web pages from ORIGIN (e.g. https://example.org; '*' = any) call "
                   "the HTTP API; repeatable (default: same origin only)")
    p.add_argument("--metrics-port", type=int, default=8002,
                   help="Prometheus /metrics HTTP port (default 8002; 0 = any; -1 = off)")
    p.add_argument("--metrics-host", default=None,
                   help="address of the metrics HTTP server (default: the same as --host)")
    g = p.add_argument_group("execution")
    g.add_argument("--engine", choices=["auto", "onnxruntime", "openvino"], default="auto",
                   help="inference engine; auto = ONNX Runtime on a usable GPU, else OpenVINO "
                   "(else ONNX Runtime's CPU provider)")
    g.add_argument("--precision", choices=["auto", "fp32", "bf16", "int8"], default="auto",
                   help="auto = bf16 on OpenVINO where the CPU has bf16 arithmetic (AVX-512 "
                   "BF16, AMX), fp32 otherwise, and int8 (NNCF, where installed) only where "
                   "it is faster than those; every reduced precision must pass the "
                   "accuracy gate at load")
    g.add_argument("--accuracy-gate-db", type=float, default=45.0,
                   help="refuse an engine/precision whose warm-up output is below this PSNR "
                   "vs fp32 ONNX Runtime (default 45; 0 = off)")
    g.add_argument("--device", choices=["auto", "tensorrt", "cuda", "cpu"], default="auto",
                   help="execution provider; auto probes TensorRT -> CUDA -> CPU")
    g.add_argument("--cudnn-conv-algo-search", choices=["HEURISTIC", "EXHAUSTIVE", "DEFAULT"],
                   default="HEURISTIC", help="CUDA conv algorithm search (EXHAUSTIVE: ~1 s "
                   "per new image shape, then faster)")
    g.add_argument("--no-trt-fp16", action="store_true", help="TensorRT in fp32")
    g.add_argument("--trt-cache-dir", default=None,
                   help="TensorRT engine cache directory (default: $XDG_CACHE_HOME/robust-style/"
                   "trt or ~/.cache/robust-style/trt; '' = no cache)")
    g.add_argument("--trt-max-pixels", type=int, default=2048 * 2048,
                   help="largest image (pixels, aspect up to 2:1) the TensorRT profiles cover; "
                   "larger ones run on the CUDA fallback (default 4194304 = 2048²)")
    g.add_argument("--trt-opt", default="720x1280", metavar="HxW",
                   help="typical image size the TensorRT engine is tuned for (default 720x1280)")
    g.add_argument("--intra-op-threads", type=int, default=0,
                   help="threads per run, both engines (0 = one per core); concurrent runs "
                   "share the cores through a process-wide budget")
    g.add_argument("--inter-op-threads", type=int, default=0, help="0 = onnxruntime default")
    g.add_argument("--max-batch", type=int, default=0,
                   help="dynamic batching: images per run (0 = auto: 8 on GPU, 1 on CPU)")
    g.add_argument("--batch-delay-ms", type=float, default=2.0,
                   help="how long to wait for same-sized requests to batch (default 2)")
    g.add_argument("--max-queue", type=int, default=64,
                   help="requests waiting per style before RESOURCE_EXHAUSTED (default 64)")
    g.add_argument("--warmup-side", type=int, default=128, help="warm-up image size (px)")
    g.add_argument("--poll-seconds", type=float, default=2.0,
                   help="hot-reload poll interval of --models (0 = no reload)")
    g.add_argument("--threads", "--workers", dest="workers", type=int, default=None,
                   metavar="N", help="gRPC worker threads = concurrent RPCs; beyond them gRPC "
                   "answers RESOURCE_EXHAUSTED (default: --max-queue + 32; --workers is the "
                   "old name)")
    lim = p.add_argument_group("limits")
    lim.add_argument("--memory-budget", default=None, metavar="SIZE",
                     help="memory the server may use, e.g. 4G or 3500M (binary units; "
                     "'none' = unbounded). Default: the machine's memory or the cgroup limit, "
                     "whichever is smaller, less 10%%. Images that do not fit run tiled "
                     "(same output), requests wait for memory, idle styles are evicted")
    lim.add_argument("--max-pixels", type=int, default=MAX_PIXELS,
                     help="largest image (width x height), checked before decoding")
    lim.add_argument("--max-message-mb", type=float, default=64.0,
                     help="largest gRPC message, MB (default 64)")
    ops = p.add_argument_group("operations")
    ops.add_argument("--tls-cert", type=Path, help="PEM certificate (enables TLS)")
    ops.add_argument("--tls-key", type=Path, help="PEM private key")
    ops.add_argument("--auth-token", default=None,
                     help=f"require 'authorization: Bearer TOKEN' (or set ${TOKEN_ENV})")
    ops.add_argument("--grace", type=float, default=10.0,
                     help="seconds in-flight requests get at shutdown (default 10)")
    ops.add_argument("--allow-empty", action="store_true",
                     help="start even with no loadable model (wait for files to appear)")
    ops.add_argument("--log-json", action="store_true", help="log JSON lines")
    p.set_defaults(handler=run)


def _config(args: argparse.Namespace, models: Path):
    from robust_style.server.app import ServerConfig
    from robust_style.server.batching import BatchConfig
    from robust_style.server.dataplane import Limits
    from robust_style.server.engines import EngineConfig, ProviderConfig, openvino_status
    from robust_style.server.engines.tensorrt import TensorRTConfig
    from robust_style.server.registry import RegistryConfig

    if args.workers is not None and args.workers < 1:
        raise UserError(f"--threads must be at least 1, got {args.workers}")
    if args.max_queue < 1:
        raise UserError(f"--max-queue must be at least 1, got {args.max_queue}")
    if (args.tls_cert is None) != (args.tls_key is None):
        raise UserError("TLS needs both --tls-cert and --tls-key")
    if args.intra_op_threads < 0 or args.inter_op_threads < 0:
        raise UserError("--intra-op-threads and --inter-op-threads must be 0 (default) or more")
    if args.engine == "openvino" and not (ov := openvino_status()).available:
        raise UserError(f"--engine openvino: OpenVINO is not usable here ({ov.reason}); "
                        "install it with `pip install openvino` or use --engine auto")
    for f in (args.tls_cert, args.tls_key):
        if f is not None and not f.is_file():
            raise UserError(f"no such file: {f}")
    try:
        opt_h, opt_w = parse_dims(args.trt_opt, 2)
    except ValueError:
        raise UserError(f"--trt-opt must be HxW, e.g. 720x1280 (got {args.trt_opt!r})") from None
    try:
        trt = TensorRTConfig(max_pixels=args.max_pixels, max_batch=args.max_batch or 8,
                             opt=(1, opt_h, opt_w), trt_max_pixels=args.trt_max_pixels)
    except ValueError as exc:
        raise UserError(f"TensorRT settings: {exc}") from None
    providers = ProviderConfig(device=args.device, tensorrt=trt, intra_op_threads=args.intra_op_threads,
                               inter_op_threads=args.inter_op_threads,
                               cudnn_conv_algo_search=args.cudnn_conv_algo_search,
                               trt_fp16=not args.no_trt_fp16,
                               trt_cache_dir=str(default_trt_cache_dir()) if args.trt_cache_dir
                               is None else args.trt_cache_dir)
    batch = BatchConfig(max_batch=max(0, args.max_batch), max_delay_ms=args.batch_delay_ms,
                        max_queue=args.max_queue)
    engine = EngineConfig(engine=args.engine, precision=args.precision,
                          gate_psnr_db=args.accuracy_gate_db, providers=providers)
    registry = RegistryConfig(models_dir=models, engine=engine, batch=batch,
                              poll_seconds=args.poll_seconds, warmup_side=args.warmup_side,
                              memory_budget=_memory_budget(args.memory_budget))
    return ServerConfig(
        registry=registry, host=args.host, port=args.port,
        limits=Limits(max_pixels=args.max_pixels),
        max_message_bytes=int(args.max_message_mb * 1024 * 1024), workers=args.workers,
        metrics_port=None if args.metrics_port < 0 else args.metrics_port,
        metrics_host=args.metrics_host or args.host,
        tls_cert=args.tls_cert, tls_key=args.tls_key,
        http_port=None if args.http_port < 0 else args.http_port,
        cors_origins=tuple(args.cors_origin),
        auth_token=args.auth_token or os.environ.get(TOKEN_ENV) or None,
        grace_seconds=args.grace)


def _memory_budget(text: str | None) -> int:
    """``--memory-budget`` as RegistryConfig.memory_budget (0 = default, -1 = none)."""
    from robust_style.server.memory import parse_size

    if text is None:
        return 0
    if text.strip().lower() == "none":
        return -1
    try:
        value = parse_size(text)
    except ValueError as exc:
        raise UserError(f"--memory-budget: {exc}") from None
    if value <= 0:
        raise UserError(f"--memory-budget must be positive, got {text!r}")
    return value


def run(args: argparse.Namespace) -> int:
    if args.log_json:
        from robust_style.server.logs import JsonFormatter

        for h in logging.getLogger().handlers:
            h.setFormatter(JsonFormatter())
    models = (args.models or default_models_dir()).expanduser()
    if not models.is_dir():
        raise UserError(f"models directory {models} does not exist")
    files = sorted(p for p in models.glob("*.onnx") if not p.name.startswith("."))
    if not files and not args.allow_empty:
        raise UserError(f"no style models (*.onnx) in {models}; export one with "
                        "`robust-style export` and pass --models DIR (or --allow-empty)")
    config = _config(args, models)

    from robust_style.server.app import StyleServer, serve_until_signal

    try:
        server = StyleServer(config)
        server.start(load_in_background=False)
    except (OSError, RuntimeError, ValueError) as exc:
        raise UserError(f"cannot start the server: {exc}") from None
    if not server.ready() and not args.allow_empty:
        server.stop(0)
        too_small = [m.reason for m in server.registry.index() if "too small" in m.reason]
        if too_small:
            raise UserError(too_small[0])
        raise UserError(f"none of the {len(files)} model file(s) in {models} could be loaded "
                        "(see the log above)")
    return serve_until_signal(server)
