"""A small Python client of the ``robust_style.v1.StyleTransfer`` API (torch-free).

>>> from robust_style.server.client import StyleClient
>>> with StyleClient("localhost:8001") as client:            # doctest: +SKIP
...     print([s.name for s in client.list_styles()])
...     result = client.stylize("photo.jpg", style="scream", max_side=1024)
...     open("out.png", "wb").write(result.image)

Errors become :class:`ClientError` (a :class:`~robust_style.errors.UserError`) with a
one-line message, e.g. when the server cannot be reached.
"""

from __future__ import annotations

import time
from collections.abc import Generator, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TypeVar

import grpc
import numpy as np

from robust_style.errors import UserError, first_line
from robust_style.server.protos.robust_style.v1 import style_transfer_pb2 as pb
from robust_style.server.protos.robust_style.v1 import style_transfer_pb2_grpc as pb_grpc

__all__ = ["StyleClient", "StylizeBackend", "StyleInfo", "StylizeResult", "ClientError", "DEFAULT_SERVER",
           "read_image"]

DEFAULT_SERVER = "localhost:8001"
_FORMATS = {"png": pb.IMAGE_FORMAT_PNG, "jpeg": pb.IMAGE_FORMAT_JPEG, "jpg": pb.IMAGE_FORMAT_JPEG}


class ClientError(UserError):
    """A failed call; ``code`` is the gRPC status code."""

    def __init__(self, message: str, code: grpc.StatusCode | None = None) -> None:
        super().__init__(message)
        self.code = code


def read_image(image: bytes | str | Path) -> bytes:
    """The encoded image of a ``stylize`` call: the bytes given, or the file's contents."""
    if isinstance(image, bytes | bytearray):
        return bytes(image)
    try:
        return Path(image).read_bytes()
    except OSError as exc:
        raise ClientError(f"cannot read image file {image}: "
                          f"{exc.strerror or type(exc).__name__}") from None


@dataclass(frozen=True)
class StyleInfo:
    name: str
    version: str
    ready: bool
    file: str
    providers: tuple[str, ...]
    metadata: dict[str, str] = field(default_factory=dict)
    #: Engine ("onnxruntime", "openvino"), precision ("fp32", "bf16", "fp16") and why.
    engine: str = ""
    precision: str = ""
    engine_note: str = ""
    sha256: str = ""


@dataclass(frozen=True)
class StylizeResult:
    image: bytes
    mime_type: str
    width: int
    height: int
    style: str
    version: str
    timing_ms: dict[str, float]
    id: str = ""


_Backend = TypeVar("_Backend", bound="StylizeBackend")


class StylizeBackend(Protocol):
    """What ``robust-style stylize`` needs of where it runs: a server (:class:`StyleClient`)
    or this machine (:class:`~robust_style.server.local.LocalStylizer`)."""

    #: How messages name the styles' place ("the server", "--model").
    where: str

    def list_styles(self) -> list[StyleInfo]: ...

    def stylize(self, image: bytes | str | Path, style: str, *, strength: float | None = None,
                preserve_color: bool = False, max_side: int = 0, format: str = "png",
                quality: int = 0) -> StylizeResult: ...

    def stylize_frames(self, frames: Iterable[np.ndarray], style: str, *,
                       strength: float | None = None, preserve_color: bool = False,
                       max_side: int = 0, timeout: float | None = None
                       ) -> Iterator[np.ndarray]: ...

    def close(self) -> None: ...

    def __enter__(self: _Backend) -> _Backend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class StyleClient(StylizeBackend):
    """Connection to a ``robust-style serve`` server.

    ``token``: bearer token (``--auth-token`` of the server). ``tls=True`` or
    ``root_cert`` (PEM bytes of the CA or self-signed certificate) for a TLS server.
    ``timeout``: default deadline per call, seconds.
    """

    where = "the server"

    def __init__(self, target: str = DEFAULT_SERVER, *, token: str | None = None,
                 tls: bool = False, root_cert: bytes | None = None, timeout: float = 120.0,
                 max_message_bytes: int = 64 * 1024 * 1024) -> None:
        self.target, self.timeout = target, timeout
        opts = [("grpc.max_receive_message_length", max_message_bytes),
                ("grpc.max_send_message_length", max_message_bytes)]
        if tls or root_cert is not None:
            creds = grpc.ssl_channel_credentials(root_certificates=root_cert)
            self._channel = grpc.secure_channel(target, creds, options=opts)
        else:
            self._channel = grpc.insecure_channel(target, options=opts)
        self._metadata = (("authorization", f"Bearer {token}"),) if token else ()
        self._stub = pb_grpc.StyleTransferStub(self._channel)

    def close(self) -> None:
        self._channel.close()

    def _error(self, exc: grpc.RpcError) -> ClientError:
        code = exc.code() if hasattr(exc, "code") else None
        details = (exc.details() if hasattr(exc, "details") else "") or ""
        if code == grpc.StatusCode.UNAVAILABLE:
            return ClientError(f"cannot reach the robust-style server at {self.target} "
                               f"({first_line(details, 120) or 'unavailable'}); "
                               "is `robust-style serve` running there?", code)
        name = code.name if code is not None else "ERROR"
        return ClientError(f"server {self.target}: {name}: {details}", code)

    def wait_ready(self, timeout: float = 30.0) -> bool:
        """Wait until the server's overall health is SERVING (False on timeout)."""
        from grpc_health.v1 import health_pb2, health_pb2_grpc

        stub = health_pb2_grpc.HealthStub(self._channel)
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            try:
                r = stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=2.0)
                if r.status == health_pb2.HealthCheckResponse.SERVING:
                    return True
            except grpc.RpcError:
                pass
            time.sleep(0.1)
        return False

    def list_styles(self, timeout: float | None = None) -> list[StyleInfo]:
        try:
            resp = self._stub.ListStyles(pb.ListStylesRequest(), timeout=timeout or self.timeout,
                                         metadata=self._metadata)
        except grpc.RpcError as exc:
            raise self._error(exc) from None
        return [StyleInfo(s.name, s.version, s.ready, s.file, tuple(s.providers),
                          dict(s.metadata), s.engine, s.precision, s.engine_note, s.sha256)
                for s in resp.styles]

    @staticmethod
    def _request(image: bytes | str | Path, style: str, strength: float | None,
                 preserve_color: bool, max_side: int, format: str, quality: int,
                 id: str = "") -> pb.StylizeRequest:
        data = read_image(image)
        if format.lower() not in _FORMATS:
            raise ClientError(f"unknown format {format!r}; use png or jpeg")
        if not 0 <= max_side <= 0xFFFFFFFF:  # a uint32 field
            raise ClientError(f"max_side must be 0 (keep) or a positive size, got {max_side}")
        req = pb.StylizeRequest(style=style, image=bytes(data), preserve_color=preserve_color,
                                max_side=max_side, format=_FORMATS[format.lower()],
                                quality=quality, id=id)
        if strength is not None:
            req.strength = strength
        return req

    @staticmethod
    def _result(r: pb.StylizeResponse) -> StylizeResult:
        t = r.timing
        timing = {"decode": t.decode_ms, "queue": t.queue_ms, "inference": t.inference_ms,
                  "encode": t.encode_ms, "total": t.total_ms}
        return StylizeResult(r.image, r.mime_type, r.width, r.height, r.style, r.version,
                             timing, r.id)

    def stylize(self, image: bytes | str | Path, style: str, *, strength: float | None = None,
                preserve_color: bool = False, max_side: int = 0, format: str = "png",
                quality: int = 0, timeout: float | None = None) -> StylizeResult:
        """Stylise one encoded image (bytes or a file path); see ``StylizeRequest``."""
        req = self._request(image, style, strength, preserve_color, max_side, format, quality)
        try:
            resp = self._stub.Stylize(req, timeout=timeout or self.timeout,
                                      metadata=self._metadata)
        except grpc.RpcError as exc:
            raise self._error(exc) from None
        return self._result(resp)

    def stylize_stream(self, images: Iterable[bytes | str | Path], style: str,
                       timeout: float | None = None, **options: Any) -> Iterator[StylizeResult]:
        """Stylise a sequence of frames over one stream; results come in order.

        ``timeout`` bounds the whole stream (default: none). An error while reading
        ``images`` (a missing file, the iterable's own) ends the stream: the frames sent
        before it are answered, then that error is raised here (gRPC reads the requests
        in its own thread and would report it only as ``UNKNOWN: Exception iterating
        requests!``).
        """
        def requests() -> Iterator[pb.StylizeRequest]:
            for i, img in enumerate(images):
                yield self._request(img, style, options.get("strength"),
                                    options.get("preserve_color", False),
                                    options.get("max_side", 0), options.get("format", "png"),
                                    options.get("quality", 0), str(i))

        return self._stream(requests(), timeout)

    def _stream(self, requests: Iterator[pb.StylizeRequest], timeout: float | None,
                ) -> Generator[StylizeResult, None, None]:
        failed: list[BaseException] = []  # gRPC reads ``requests`` in its own thread

        def guarded() -> Iterator[pb.StylizeRequest]:
            try:
                yield from requests
            except Exception as exc:
                failed.append(exc)

        call = self._stub.StylizeStream(guarded(), timeout=timeout, metadata=self._metadata)
        try:
            for resp in call:
                yield self._result(resp)
        except grpc.RpcError as exc:
            if failed:
                raise failed[0] from None
            raise self._error(exc) from None
        finally:
            call.cancel()  # the caller stopped early (or it ended): release the stream
        if failed:
            raise failed[0]

    def stylize_frames(self, frames: Iterable[np.ndarray], style: str, *,
                       strength: float | None = None, preserve_color: bool = False,
                       max_side: int = 0, timeout: float | None = None,
                       raw: bool = True) -> Iterator[np.ndarray]:
        """Frames in, stylised frames out, in order, over one stream (webcams, live video).

        ``frames`` yields ``HxWx3 uint8`` RGB arrays (any iterable, read lazily as the
        server takes them); the result yields arrays of the same kind (``max_side`` may
        shrink them; they are shrunk here, before sending). Frames travel raw
        (``raw_width``/``raw_height`` and ``IMAGE_FORMAT_RAW_RGB``: no encode or decode on
        either side, which at 640x360 costs about as much as a fast network's inference),
        or as lossless PNG with ``raw=False`` (fewer bytes on a slow link). Closing the
        returned iterator early cancels the stream. ``timeout`` bounds the whole stream
        (default: none).
        """
        from robust_style.imageio import decode_image, fit_max_side
        from robust_style.server.images import RAW_MIME, encode_image

        def requests() -> Iterator[pb.StylizeRequest]:
            for i, frame in enumerate(frames):
                arr = np.asarray(frame)
                if arr.dtype != np.uint8 or arr.ndim != 3 or arr.shape[2] != 3:
                    raise ClientError(f"frames must be HxWx3 uint8 RGB arrays, got "
                                      f"{arr.dtype} {arr.shape}")
                arr = fit_max_side(arr, max_side)
                if raw:
                    req = pb.StylizeRequest(
                        style=style, image=np.ascontiguousarray(arr).tobytes(),
                        raw_width=arr.shape[1], raw_height=arr.shape[0],
                        preserve_color=preserve_color, format=pb.IMAGE_FORMAT_RAW_RGB,
                        id=str(i))
                else:
                    req = pb.StylizeRequest(style=style, image=encode_image(arr, "png").data,
                                            preserve_color=preserve_color,
                                            format=pb.IMAGE_FORMAT_PNG, id=str(i))
                if strength is not None:
                    req.strength = strength
                yield req

        stream = self._stream(requests(), timeout)
        try:
            for res in stream:
                if res.mime_type == RAW_MIME:
                    yield np.frombuffer(res.image, np.uint8).reshape(res.height, res.width, 3)
                else:
                    yield decode_image(res.image, max_pixels=1 << 40)
        finally:
            stream.close()
