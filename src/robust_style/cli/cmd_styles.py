"""``robust-style styles``: list the styles a server serves."""

from __future__ import annotations

import argparse
import json
import os
import sys

__all__ = ["register", "add_connection_args", "connect"]

from robust_style.server import TOKEN_ENV


def add_connection_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--server", default=None,
                   help="HOST:PORT of `robust-style serve` (default localhost:8001)")
    p.add_argument("--token", default=None, help=f"bearer token (or set ${TOKEN_ENV})")
    p.add_argument("--tls", action="store_true", help="connect with TLS (system CAs)")
    p.add_argument("--ca-cert", default=None,
                   help="PEM file of the CA / self-signed certificate (implies --tls)")
    p.add_argument("--timeout", type=float, default=120.0, help="seconds per call")


def connect(args: argparse.Namespace):
    from pathlib import Path

    from robust_style.errors import UserError
    from robust_style.server.client import DEFAULT_SERVER, StyleClient

    root = None
    if args.ca_cert:
        path = Path(args.ca_cert)
        if not path.is_file():
            raise UserError(f"no such file: {path}")
        root = path.read_bytes()
    return StyleClient(args.server or DEFAULT_SERVER,
                       token=args.token or os.environ.get(TOKEN_ENV), tls=args.tls,
                       root_cert=root, timeout=args.timeout)


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("styles", help="list the styles a server serves",
                              description="List the styles served by `robust-style serve`.")
    add_connection_args(p)
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    with connect(args) as client:
        styles = client.list_styles()
    if args.json:
        sys.stdout.write(json.dumps([{"name": s.name, "version": s.version, "ready": s.ready,
                                      "file": s.file, "sha256": s.sha256,
                                      "providers": list(s.providers),
                                      "engine": s.engine, "precision": s.precision,
                                      "engine_note": s.engine_note,
                                      "metadata": s.metadata} for s in styles], indent=2) + "\n")
        return 0
    if not styles:
        sys.stdout.write(f"no styles loaded on {args.server or 'localhost:8001'}\n")
        return 0
    rows = [("STYLE", "VERSION", "READY", "ENGINE", "PROVIDER", "BACKBONE", "STEPS")]
    for s in styles:
        rows.append((s.name, s.version, "yes" if s.ready else "no",
                     f"{s.engine} {s.precision}".strip() or "-",
                     (s.providers[0] if s.providers else "-").replace("ExecutionProvider", ""),
                     s.metadata.get("backbone", "") or "-", s.metadata.get("steps", "") or "-"))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        sys.stdout.write("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
                         + "\n")
    return 0
