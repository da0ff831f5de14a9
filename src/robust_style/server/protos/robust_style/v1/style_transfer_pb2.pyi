from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ImageFormat(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    IMAGE_FORMAT_UNSPECIFIED: _ClassVar[ImageFormat]
    IMAGE_FORMAT_PNG: _ClassVar[ImageFormat]
    IMAGE_FORMAT_JPEG: _ClassVar[ImageFormat]
    IMAGE_FORMAT_RAW_RGB: _ClassVar[ImageFormat]
IMAGE_FORMAT_UNSPECIFIED: ImageFormat
IMAGE_FORMAT_PNG: ImageFormat
IMAGE_FORMAT_JPEG: ImageFormat
IMAGE_FORMAT_RAW_RGB: ImageFormat

class ListStylesRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class Style(_message.Message):
    __slots__ = ("name", "version", "ready", "metadata", "providers", "file", "sha256", "engine", "precision", "engine_note")
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    NAME_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    READY_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    PROVIDERS_FIELD_NUMBER: _ClassVar[int]
    FILE_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    ENGINE_FIELD_NUMBER: _ClassVar[int]
    PRECISION_FIELD_NUMBER: _ClassVar[int]
    ENGINE_NOTE_FIELD_NUMBER: _ClassVar[int]
    name: str
    version: str
    ready: bool
    metadata: _containers.ScalarMap[str, str]
    providers: _containers.RepeatedScalarFieldContainer[str]
    file: str
    sha256: str
    engine: str
    precision: str
    engine_note: str
    def __init__(self, name: _Optional[str] = ..., version: _Optional[str] = ..., ready: _Optional[bool] = ..., metadata: _Optional[_Mapping[str, str]] = ..., providers: _Optional[_Iterable[str]] = ..., file: _Optional[str] = ..., sha256: _Optional[str] = ..., engine: _Optional[str] = ..., precision: _Optional[str] = ..., engine_note: _Optional[str] = ...) -> None: ...

class ListStylesResponse(_message.Message):
    __slots__ = ("styles",)
    STYLES_FIELD_NUMBER: _ClassVar[int]
    styles: _containers.RepeatedCompositeFieldContainer[Style]
    def __init__(self, styles: _Optional[_Iterable[_Union[Style, _Mapping]]] = ...) -> None: ...

class StylizeRequest(_message.Message):
    __slots__ = ("style", "image", "strength", "preserve_color", "max_side", "format", "quality", "id", "raw_width", "raw_height")
    STYLE_FIELD_NUMBER: _ClassVar[int]
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    STRENGTH_FIELD_NUMBER: _ClassVar[int]
    PRESERVE_COLOR_FIELD_NUMBER: _ClassVar[int]
    MAX_SIDE_FIELD_NUMBER: _ClassVar[int]
    FORMAT_FIELD_NUMBER: _ClassVar[int]
    QUALITY_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    RAW_WIDTH_FIELD_NUMBER: _ClassVar[int]
    RAW_HEIGHT_FIELD_NUMBER: _ClassVar[int]
    style: str
    image: bytes
    strength: float
    preserve_color: bool
    max_side: int
    format: ImageFormat
    quality: int
    id: str
    raw_width: int
    raw_height: int
    def __init__(self, style: _Optional[str] = ..., image: _Optional[bytes] = ..., strength: _Optional[float] = ..., preserve_color: _Optional[bool] = ..., max_side: _Optional[int] = ..., format: _Optional[_Union[ImageFormat, str]] = ..., quality: _Optional[int] = ..., id: _Optional[str] = ..., raw_width: _Optional[int] = ..., raw_height: _Optional[int] = ...) -> None: ...

class Timing(_message.Message):
    __slots__ = ("decode_ms", "queue_ms", "inference_ms", "encode_ms", "total_ms")
    DECODE_MS_FIELD_NUMBER: _ClassVar[int]
    QUEUE_MS_FIELD_NUMBER: _ClassVar[int]
    INFERENCE_MS_FIELD_NUMBER: _ClassVar[int]
    ENCODE_MS_FIELD_NUMBER: _ClassVar[int]
    TOTAL_MS_FIELD_NUMBER: _ClassVar[int]
    decode_ms: float
    queue_ms: float
    inference_ms: float
    encode_ms: float
    total_ms: float
    def __init__(self, decode_ms: _Optional[float] = ..., queue_ms: _Optional[float] = ..., inference_ms: _Optional[float] = ..., encode_ms: _Optional[float] = ..., total_ms: _Optional[float] = ...) -> None: ...

class StylizeResponse(_message.Message):
    __slots__ = ("image", "mime_type", "width", "height", "style", "version", "timing", "id")
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    MIME_TYPE_FIELD_NUMBER: _ClassVar[int]
    WIDTH_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    STYLE_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    TIMING_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    image: bytes
    mime_type: str
    width: int
    height: int
    style: str
    version: str
    timing: Timing
    id: str
    def __init__(self, image: _Optional[bytes] = ..., mime_type: _Optional[str] = ..., width: _Optional[int] = ..., height: _Optional[int] = ..., style: _Optional[str] = ..., version: _Optional[str] = ..., timing: _Optional[_Union[Timing, _Mapping]] = ..., id: _Optional[str] = ...) -> None: ...
