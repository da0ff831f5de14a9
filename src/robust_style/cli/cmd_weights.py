"""``robust-style weights``: list, download, import and verify loss-network weights."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from robust_style.cli.options import (
    add_command_group,
    add_no_progress,
    add_trust_checkpoint,
    show_progress,
)

__all__ = ["register"]


def register(subparsers: Any) -> None:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--registry", action="append", type=Path, default=[], metavar="FILE",
                        help="extra registry JSON file layered over the built-in one "
                             "(repeatable; also $ROBUST_STYLE_REGISTRY)")
    common.add_argument("--home", type=Path, default=None, metavar="DIR",
                        help="robust-style home; weights live in DIR/weights "
                             "(default: $ROBUST_STYLE_HOME or the user cache dir)")
    trust = argparse.ArgumentParser(add_help=False)
    add_trust_checkpoint(trust, "the file when checking it")

    sub = add_command_group(
        subparsers, "weights", dest="weights_command",
        help="list, download, import and verify loss-network weights",
        description="Known loss-network weights and the local cache. See docs/weights.md.")

    ls = sub.add_parser("list", parents=[common], help="known weights, one line each")
    ls.add_argument("--json", action="store_true", help="print JSON instead of a table")
    ls.set_defaults(handler=_list)

    dl = sub.add_parser("download", parents=[common, trust],
                        help="download registered weights into the cache")
    dl.add_argument("name", help="registry name (see `robust-style weights list`)")
    dl.add_argument("--url", action="append", default=[], metavar="URL",
                    help="fetch from this URL instead of the registry's (a mirror; repeatable, "
                         "tried in order)")
    dl.add_argument("--force", action="store_true", help="download even if a valid copy is cached")
    dl.add_argument("--timeout", type=float, default=30.0, metavar="S",
                    help="seconds without data before giving up on a connection (default 30)")
    dl.add_argument("--retries", type=int, default=3, metavar="N",
                    help="resume a transfer that broke off up to N times (default 3)")
    add_no_progress(dl)
    dl.set_defaults(handler=_download)

    im = sub.add_parser("import", parents=[common, trust],
                        help="register a weights file you already have")
    im.add_argument("name", help="registry name the file is")
    im.add_argument("file", type=Path, help="the weights file")
    im.add_argument("--link", action="store_true",
                    help="symlink the file into the cache instead of copying it")
    im.set_defaults(handler=_import)

    ve = sub.add_parser("verify", parents=[common, trust],
                        help="re-check cached files (sha256, size, safe load)")
    ve.add_argument("name", nargs="?", help="only this entry (default: every cached one)")
    ve.set_defaults(handler=_verify)

    pa = sub.add_parser("path", parents=[common], help="print the cached file of NAME")
    pa.add_argument("name")
    pa.set_defaults(handler=_path)


def _out(line: str = "") -> None:
    sys.stdout.write(line + "\n")


def _registry(args: argparse.Namespace):
    from robust_style.perceptual.weights.registry import load_registry

    return load_registry(args.registry)


def _list(args: argparse.Namespace) -> int:
    from robust_style.perceptual.weights.cache import cache_dir, cached_path, read_record
    from robust_style.perceptual.weights.download import part_path
    from robust_style.perceptual.weights.store import human_size

    reg = _registry(args)
    rows: list[dict[str, Any]] = []
    for entry in reg.values():
        rec = read_record(entry.name, args.home) or {}
        path = cached_path(entry, args.home)
        part = part_path(entry, args.home)
        if path.is_file():
            cached = "yes"
        elif part.is_file():
            cached = f"partial ({human_size(part.stat().st_size)})"
        else:
            cached = "no"
        size = entry.size if entry.size is not None else rec.get("size")
        rows.append({**entry.to_json(), "cached": cached, "path": str(path),
                     "size_display": human_size(size), "origin": entry.origin,
                     "recorded_sha256": rec.get("sha256")})
    if args.json:
        _out(json.dumps({"cache": str(cache_dir(args.home)), "entries": rows}, indent=2,
                        ensure_ascii=False))
        return 0
    cols = [("NAME", "name"), ("BACKBONE", "backbone"), ("SIZE", "size_display"),
            ("SOURCE", "origin"), ("LICENCE", "licence"), ("CACHED", "cached"),
            ("TRAINING", "training")]
    widths = [max(len(h), *(len(str(r[k])) for r in rows)) for h, k in cols]
    _out("  ".join(h.ljust(w) for (h, _), w in zip(cols, widths, strict=True)).rstrip())
    for r in rows:
        _out("  ".join(str(r[k]).ljust(w) for (_, k), w in zip(cols, widths, strict=True)).rstrip())
    _out(f"cache: {cache_dir(args.home)}")
    return 0


def _download(args: argparse.Namespace) -> int:
    from robust_style.errors import UserError
    from robust_style.perceptual.weights.download import DownloadConfig, download

    if args.retries < 0 or args.timeout <= 0:
        raise UserError("--retries must be >= 0 and --timeout > 0")
    entry = _registry(args).get_entry(args.name)
    cfg = DownloadConfig(timeout=args.timeout, retries=args.retries,
                         progress=show_progress(args))
    path, result = download(entry, home=args.home, urls=tuple(args.url) or None, config=cfg,
                            force=args.force, trust=args.trust_checkpoint)
    if result is None:
        _out(f"{entry.name}: already cached at {path}")
    else:
        how = "matches the registry" if entry.sha256 else "recorded (registry has none)"
        _out(f"{entry.name}: {path} ({result.size} bytes, sha256 {result.sha256} {how}; "
             f"{result.summary})")
    return 0


def _import(args: argparse.Namespace) -> int:
    from robust_style.errors import UserError
    from robust_style.perceptual.weights import keras_h5
    from robust_style.perceptual.weights.store import import_file

    entry = _registry(args).get_entry(args.name)
    if args.file.is_file() and keras_h5.is_hdf5(args.file):
        if entry.backbone != "vgg19-caffe":
            raise UserError(f"{args.file} is an HDF5 (Keras) file; only Keras' VGG-19 can be "
                            "imported from one: robust-style weights import vgg19-caffe-keras FILE")
        path, result = keras_h5.import_keras_vgg19(entry, args.file, home=args.home)
        _out(f"{entry.name}: converted {args.file} (Keras md5 checked) -> {path} "
             f"({result.size} bytes, sha256 {result.sha256}; {result.summary})")
        return 0
    path, result = import_file(entry, args.file, home=args.home, link=args.link,
                               trust=args.trust_checkpoint)
    how = "linked" if args.link else "copied"
    _out(f"{entry.name}: {how} {args.file} -> {path} ({result.size} bytes, sha256 "
         f"{result.sha256}; {result.summary})")
    return 0


def _verify(args: argparse.Namespace) -> int:
    from robust_style.errors import UserError
    from robust_style.perceptual.weights.cache import cache_dir, cached_path
    from robust_style.perceptual.weights.store import MismatchError, verify_cached

    reg = _registry(args)
    if args.name:
        entries = [reg.get_entry(args.name)]
        if not cached_path(entries[0], args.home).is_file():
            raise UserError(f"{args.name} is not in the cache ({cache_dir(args.home)}); "
                            f"nothing to verify")
    else:
        entries = [e for e in reg.values() if cached_path(e, args.home).is_file()]
        if not entries:
            _out(f"no cached weights in {cache_dir(args.home)}")
            return 0
    failed = 0
    for entry in entries:
        try:
            result = verify_cached(entry, home=args.home, trust=args.trust_checkpoint)
        except MismatchError as exc:
            failed += 1
            _out(f"FAILED  {entry.name}: {exc}")
            continue
        _out(f"ok      {entry.name}: sha256 {result.sha256}, {result.size} bytes, "
             f"{result.summary}")
    if failed:
        sys.stderr.write(f"robust-style: error: {failed} of {len(entries)} cached file(s) "
                         "failed verification; fetch them again with `robust-style weights "
                         "download NAME` (or `weights import NAME FILE`)\n")
        return 1
    return 0


def _path(args: argparse.Namespace) -> int:
    from robust_style.perceptual.weights.cache import resolve_backbone

    reg = _registry(args)
    entry = reg.get_entry(args.name)
    _, path = resolve_backbone(entry.name, None, home=args.home, registry=reg)
    _out(str(path))
    return 0
