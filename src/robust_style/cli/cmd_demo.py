"""``robust-style demo``: the product end to end, in one command, with nothing to download.

Starts the gRPC server on 127.0.0.1 (a free port) with the bundled style model(s),
stylises the bundled sample photo (or the photos given) through gRPC with the client,
writes the results and a ``content | style result`` comparison, says where they are, and
stops the server. Torch-free, like everything on the serving path.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from robust_style.fileio import atomic_write, atomic_write_bytes

__all__ = ["register", "bundled_sample"]


def bundled_sample() -> Path:
    """The sample photo shipped with the package."""
    from importlib import resources

    return Path(str(resources.files("robust_style") / "models" / "sample.jpg"))


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "demo", help="serve the bundled style(s) and stylise a photo through gRPC",
        description="Start the server on the bundled style model(s), stylise the bundled "
        "sample photo (or PHOTO...) through gRPC, write the results to --out, stop.")
    p.add_argument("photos", nargs="*", type=Path, metavar="PHOTO",
                   help="photos to stylise (default: the bundled sample photo)")
    p.add_argument("--models", type=Path, default=None,
                   help="folder of *.onnx style models (default: the bundled models)")
    p.add_argument("-o", "--out", type=Path, default=Path("robust-style-demo"),
                   help="output folder (default: ./robust-style-demo)")
    p.add_argument("--max-side", type=int, default=768,
                   help="downscale photos to this longer side first (default 768; 0 = keep)")
    p.set_defaults(handler=_run)


def _run(args: argparse.Namespace) -> int:
    from PIL import Image

    from robust_style.cli.cmd_serve import default_models_dir
    from robust_style.contract import valid_style_name
    from robust_style.errors import UserError
    from robust_style.server.app import ServerConfig, StyleServer
    from robust_style.server.client import StyleClient
    from robust_style.server.registry import RegistryConfig

    if args.max_side < 0:
        raise UserError(f"--max-side must be 0 (keep) or a positive size, got {args.max_side}")
    models = (args.models or default_models_dir()).expanduser()
    if not any(models.glob("*.onnx")):
        raise UserError(f"no style models (*.onnx) in {models}")
    photos = args.photos or [bundled_sample()]
    for photo in photos:
        if not photo.is_file():
            raise UserError(f"photo not found: {photo}")
    server = StyleServer(ServerConfig(RegistryConfig(models_dir=models, poll_seconds=0),
                                      host="127.0.0.1", port=0, metrics_port=None))
    server.start(load_in_background=False)
    written: list[Path] = []
    try:
        if not server.ready():
            raise UserError(f"no style model in {models} could be loaded (see the log above)")
        with StyleClient(server.address) as client:
            styles = client.list_styles(timeout=30)
            args.out.mkdir(parents=True, exist_ok=True)
            for style in styles:
                if not valid_style_name(style.name):  # it becomes part of a file name
                    raise UserError(f"the server offers an unusable style name {style.name!r}")
                for photo in photos:
                    result = client.stylize(photo, style.name, max_side=args.max_side,
                                            timeout=300)
                    out = args.out / f"{photo.stem}_{style.name}.png"
                    atomic_write_bytes(out, result.image)
                    written.append(out)
                    server_ms = result.timing_ms.get("total", 0.0)
                    sys.stdout.write(
                        f"{photo.name} -> {out}  ({result.width}x{result.height}, style "
                        f"{style.name!r}, {server_ms:.0f} ms on the server)\n")
                    _comparison(photo, out, Image)
    finally:
        server.stop(0)
    sys.stdout.write(f"done: {len(written)} stylised image(s) in {args.out.resolve()}\n")
    return 0


def _comparison(photo: Path, stylised: Path, image_module) -> None:
    """``PHOTO_STYLE-compare.png``: the photo and the result side by side."""
    Image = image_module
    from robust_style.imageio import read_image

    # The photo as the server saw it: the one decoder applies EXIF orientation etc.
    with Image.fromarray(read_image(photo)) as a_raw, Image.open(stylised) as b:
        a = a_raw.resize(b.size)
        grid = Image.new("RGB", (a.width + b.width + 8, a.height), "white")
        grid.paste(a, (0, 0))
        grid.paste(b.convert("RGB"), (a.width + 8, 0))
        out = stylised.with_name(stylised.stem + "-compare.png")
        with atomic_write(out) as fh:
            grid.save(fh, format="PNG")
