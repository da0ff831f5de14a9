"""Protobuf messages -> the JSON Triton's HTTP API answers with.

The KServe management answers (:mod:`robust_style.server.kserve.management`) are built once,
as protobuf messages, for both transports. Triton's HTTP API writes them as proto3 JSON
with two differences from ``google.protobuf.json_format``: 64-bit integers are JSON
numbers, not strings (Triton's ``ModelConfigToJson`` converts them back; ``perf_analyzer``
reads the statistics as numbers), and scalar fields at their default value are written
too (a statistic with count 0 is ``{"count": 0, "ns": 0}``). Field names are the proto
names (``max_batch_size``), enums their names.
"""

from __future__ import annotations

from typing import Any

from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

__all__ = ["to_json"]


def _repeated(field: FieldDescriptor) -> bool:
    flag = getattr(field, "is_repeated", None)
    if flag is not None:
        return bool(flag)
    return bool(field.label == FieldDescriptor.LABEL_REPEATED)


def _value(field: FieldDescriptor, value: Any) -> Any:
    if field.message_type is not None:
        return to_json(value)
    if field.enum_type is not None:
        ev = field.enum_type.values_by_number.get(value)
        return ev.name if ev is not None else value
    if isinstance(value, bytes):
        import base64

        return base64.b64encode(value).decode()
    return value


def to_json(message: Message) -> dict[str, Any]:
    """``message`` as a JSON-ready dict (see the module docstring for the conventions)."""
    out: dict[str, Any] = {}
    for field in message.DESCRIPTOR.fields:
        value = getattr(message, field.name)
        mt = field.message_type
        if mt is not None and mt.GetOptions().map_entry:
            vf = mt.fields_by_name["value"]
            out[field.name] = {k: _value(vf, v) for k, v in value.items()}
        elif _repeated(field):
            out[field.name] = [_value(field, v) for v in value]
        elif (mt is not None or field.containing_oneof is not None) \
                and not message.HasField(field.name):
            continue  # unset sub-message or oneof member: absent, as in proto3 JSON
        else:
            out[field.name] = _value(field, value)
    return out
