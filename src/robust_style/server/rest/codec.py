"""Triton's binary tensor data extension of the KServe v2 HTTP/REST infer request.

A request body is a JSON header, then the raw bytes of every input whose ``parameters``
say ``binary_data_size`` (in input order); the ``Inference-Header-Content-Length`` header
gives the JSON's length (absent: the whole body is JSON). A response is the same: the
JSON header, then the bytes of every output answered in binary (``binary_data_size`` in
its ``parameters``), with ``Inference-Header-Content-Length`` set. Source: Triton's
``docs/protocol/extension_binary_data.md``. JSON tensors carry their values in ``data``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from robust_style.server.errors import InvalidRequest

__all__ = ["HEADER_LENGTH", "InferBody", "parse_request", "binary_outputs", "encode_response"]

HEADER_LENGTH = "Inference-Header-Content-Length"


@dataclass(frozen=True)
class InferBody:
    """A decoded infer request: the JSON header and each input's binary data (or None)."""

    header: dict[str, Any]
    inputs: list[dict[str, Any]]
    binary: list[memoryview | None]


def _params(obj: dict[str, Any], what: str) -> dict[str, Any]:
    params = obj.get("parameters") or {}
    if not isinstance(params, dict):
        raise InvalidRequest(f"{what}: 'parameters' must be a JSON object")
    return params


def parse_request(body: bytes, header_length: str | None) -> InferBody:
    """Split ``body`` into its JSON header and binary inputs; :class:`InvalidRequest`."""
    view = memoryview(body)
    if header_length is None:
        size = len(body)
    else:
        try:
            size = int(header_length)
        except ValueError:
            size = -1
        if not 0 <= size <= len(body):
            raise InvalidRequest(f"{HEADER_LENGTH} must be 0..{len(body)} (the body's size), "
                                 f"got {header_length!r}")
    try:
        header = json.loads(view[:size].tobytes() if size < len(body) else body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidRequest(f"the infer request is not valid JSON: {exc}") from None
    if not isinstance(header, dict):
        raise InvalidRequest("the infer request must be a JSON object with 'inputs'")
    inputs = header.get("inputs")
    if not isinstance(inputs, list) or not all(isinstance(i, dict) for i in inputs):
        raise InvalidRequest("the infer request needs 'inputs': a list of tensor objects")
    offset = size
    binary: list[memoryview | None] = []
    for i, inp in enumerate(inputs):
        n = _params(inp, f"input {inp.get('name', i)!r}").get("binary_data_size")
        if n is None:
            binary.append(None)
            continue
        if not isinstance(n, int) or isinstance(n, bool) or n < 0:
            raise InvalidRequest(f"input {inp.get('name', i)!r}: binary_data_size must be a "
                                 f"non-negative integer, got {n!r}")
        if offset + n > len(body):
            raise InvalidRequest(f"input {inp.get('name', i)!r}: binary_data_size {n} runs "
                                 f"past the end of the body ({len(body) - offset} bytes left)")
        binary.append(view[offset:offset + n])
        offset += n
    if offset != len(body):
        raise InvalidRequest(f"{len(body) - offset} bytes after the JSON header and the "
                             f"binary inputs; set {HEADER_LENGTH} and binary_data_size")
    return InferBody(header, inputs, binary)


def binary_outputs(header: dict[str, Any], names: list[str]) -> list[bool]:
    """For each output name: answer it in binary? (per output ``binary_data``, else the
    request's ``binary_data_output``, else JSON)."""
    default = bool(_params(header, "the request").get("binary_data_output", False))
    asked = {o.get("name"): o for o in header.get("outputs") or [] if isinstance(o, dict)}
    out = []
    for name in names:
        flag = _params(asked[name], f"output {name!r}").get("binary_data") if name in asked \
            else None
        out.append(default if flag is None else bool(flag))
    return out


def encode_response(header: dict[str, Any], blobs: list[bytes | memoryview]
                    ) -> tuple[bytes, int | None]:
    """The response body and its JSON header's length (None: no binary outputs)."""
    data = json.dumps(header, separators=(",", ":")).encode()
    if not blobs:
        return data, None
    return b"".join([data, *blobs]), len(data)
