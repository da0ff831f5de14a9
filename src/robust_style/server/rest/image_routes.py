"""The image endpoint for people, scripts and the web page: encoded images in and out.

``POST /v1/styles/{name}/stylize`` takes the photo as a multipart form's ``image`` field
(``curl -F image=@photo.jpg``) or as the raw body (``curl --data-binary @photo.jpg``),
with the query parameters of the gRPC ``StylizeRequest`` (``strength``, ``preserve_color``,
``max_side``, ``format``, ``quality``), and answers the encoded image; the timing and the
style's version are in ``X-*`` headers. ``GET /v1/styles`` lists what gRPC ``ListStyles``
lists, plus the URL of each style's thumbnail: the bundled sample photo stylised once per
style version (``GET /v1/styles/{name}/thumbnail``, cached until the style is reloaded).
All of it goes through the one data plane (:meth:`DataPlane.submit_image`).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from importlib import resources
from typing import TypeVar

from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from robust_style.server.dataplane import DataPlane, ImageOptions, Stylized
from robust_style.server.errors import InvalidRequest
from robust_style.server.rest.endpoint import Call, Endpoints

__all__ = ["ImageRoutes", "DOOR", "THUMBNAIL_SIDE", "options_of"]

#: The data plane's name of this front door (``DataPlane.served``).
DOOR = "image-http"
#: Longer side of a thumbnail (px).
THUMBNAIL_SIDE = 256
T = TypeVar("T")
_TRUE, _FALSE = ("1", "true", "yes", "on"), ("", "0", "false", "no", "off")


def _parse(query: Mapping[str, str], key: str, kind: Callable[[str], T], default: T) -> T:
    value = query.get(key)
    if value is None or value == "":
        return default
    try:
        return kind(value)
    except ValueError:
        what = "an integer" if kind is int else "a number"
        raise InvalidRequest(f"query parameter {key} must be {what}, got {value!r}") from None


def options_of(query: Mapping[str, str]) -> ImageOptions:
    """The data plane's options from the query string (bad values: :class:`InvalidRequest`)."""
    color = query.get("preserve_color", "").lower()
    if color not in _TRUE + _FALSE:
        raise InvalidRequest(f"query parameter preserve_color must be true or false, got "
                             f"{color!r}")
    strength: float | None = _parse(query, "strength", float, None)
    return ImageOptions(strength=strength, preserve_color=color in _TRUE,
                        max_side=_parse(query, "max_side", int, 0),
                        format=query.get("format", "png").lower().replace("jpg", "jpeg"),
                        quality=_parse(query, "quality", int, 0))


def _image_response(out: Stylized) -> Response:
    t = out.timing
    return Response(out.data, media_type=out.mime_type, headers={
        "X-Style": out.model.name, "X-Style-Version": out.model.version,
        "X-Image-Width": str(out.pixels.shape[1]), "X-Image-Height": str(out.pixels.shape[0]),
        "X-Timing-Total-Ms": f"{t.total_ms:.2f}", "X-Timing-Inference-Ms": f"{t.inference_ms:.2f}",
        "X-Timing-Queue-Ms": f"{t.queue_ms:.2f}"})


class ImageRoutes:
    def __init__(self, plane: DataPlane) -> None:
        self.plane = plane
        self._sample = (resources.files("robust_style") / "models" / "sample.jpg").read_bytes()
        self._thumbs: dict[tuple[str, str], bytes] = {}
        self._thumb_lock = threading.Lock()

    def routes(self, ep: Endpoints) -> list[Route]:
        return [
            Route("/v1/styles", ep.wrap("ListStyles", self.list_styles), methods=["GET"]),
            Route("/v1/styles/{name}/stylize", ep.wrap("Stylize", self.stylize, image=True),
                  methods=["POST"]),
            Route("/v1/styles/{name}/thumbnail", ep.wrap("Thumbnail", self.thumbnail),
                  methods=["GET"]),
        ]

    def list_styles(self, call: Call) -> Response:
        styles = []
        for m in self.plane.registry.styles():
            d = m.describe()
            d["thumbnail"] = f"/v1/styles/{m.name}/thumbnail?v={m.version}"
            styles.append(d)
        return JSONResponse({"styles": styles})

    def stylize(self, call: Call) -> Response:
        if not call.body:
            raise InvalidRequest("no image: send it as the multipart field 'image' (curl -F "
                                 "image=@photo.jpg) or as the request body (--data-binary)")
        pending = self.plane.submit_image(call.body, call.path["name"], options_of(call.query), DOOR)
        return _image_response(self.plane.finish(pending))

    def thumbnail(self, call: Call) -> Response:
        model, _ = self.plane.lookup(call.path["name"])
        key = (model.name, model.version)
        with self._thumb_lock:
            data = self._thumbs.get(key)
        if data is None:
            opts = ImageOptions(max_side=THUMBNAIL_SIDE, format="jpeg", quality=85)
            data = self.plane.finish(self.plane.submit_image(self._sample, model.name, opts,
                                                             DOOR)).data
            with self._thumb_lock:
                self._thumbs = {k: v for k, v in self._thumbs.items() if k[0] != model.name}
                self._thumbs[key] = data
        return Response(data, media_type="image/jpeg",
                        headers={"Cache-Control": "public, max-age=3600"})
