"""The wire protocol: every JSON text frame a client and the server exchange.

Client, handlers and local gateway all speak through these models, so the
protocol is defined once here and nowhere else. Parsing sits on the path of
every message: size, UTF-8 and nesting are checked on the raw text before the
parser runs, and the validators are built once at import. Whatever a peer
sends, the only exception that leaves the parse functions is `ProtocolError`,
which a handler can turn into an `error` frame as it stands.
"""

from __future__ import annotations

import math
import re
import time
from enum import StrEnum
from typing import Annotated, Any, Final, Literal, TypeVar

import pydantic_core
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    JsonValue,
    TypeAdapter,
    ValidationError,
)

from streamer_core._ids import new_request_id
from streamer_core.limits import MAX_FRAME_BYTES, MAX_NESTING_DEPTH, RequestStatus

__all__ = [
    "ACTION_PATTERN",
    "BUILTIN_ACTIONS",
    "ID_PATTERN",
    "MAX_FRAME_BYTES",
    "MAX_NESTING_DEPTH",
    "TERMINAL_STATUSES",
    "TOPIC_PATTERN",
    "AcknowledgmentFrame",
    "ClientFrame",
    "CompleteFrame",
    "ErrorCode",
    "ErrorFrame",
    "ErrorInfo",
    "EventFrame",
    "FrameTooLargeError",
    "PongFrame",
    "ProgressFrame",
    "ProgressState",
    "ProtocolError",
    "RequestRefPayload",
    "RequestSnapshot",
    "RequestStatus",
    "ResponseFrame",
    "ServerFrame",
    "StatusFrame",
    "SubscribedFrame",
    "TopicPayload",
    "UnsubscribedFrame",
    "builtin_payload",
    "encode",
    "new_request_id",
    "parse_client_frame",
    "parse_server_frame",
]

BUILTIN_ACTIONS: Final = frozenset({"ping", "subscribe", "unsubscribe", "status", "cancel"})
ACTION_PATTERN: Final = r"^[a-z][a-z0-9_.-]{0,63}$"
ID_PATTERN: Final = r"^[A-Za-z0-9_.:-]{1,128}$"
# No '#' or '$': storage joins keys with '#', and '$' starts API Gateway route keys.
TOPIC_PATTERN: Final = r"^[A-Za-z0-9_.:/-]{1,256}$"


class ErrorCode(StrEnum):
    VALIDATION_ERROR = "VALIDATION_ERROR"
    UNAUTHORIZED = "UNAUTHORIZED"
    FORBIDDEN = "FORBIDDEN"
    NOT_FOUND = "NOT_FOUND"
    CONFLICT = "CONFLICT"
    RATE_LIMITED = "RATE_LIMITED"
    TIMEOUT = "TIMEOUT"
    INTERNAL_ERROR = "INTERNAL_ERROR"
    CANCELLED = "CANCELLED"


TERMINAL_STATUSES: Final = frozenset(
    {RequestStatus.COMPLETED, RequestStatus.FAILED, RequestStatus.CANCELLED}
)


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


_T = TypeVar("_T")


def _reject_non_finite(value: _T) -> _T:
    """Refuse NaN and Infinity anywhere inside a JSON value.

    JSON has no such numbers, yet the parser turns `NaN` and an overflowing
    `1e400` into floats, and the serializer would silently send them as null.
    Serializing in Rust and searching the bytes is about twice as fast as
    walking the value in Python; only a hit (or a string that happens to
    contain those words) pays for the walk.
    """
    if isinstance(value, float):
        suspicious = not math.isfinite(value)
    elif isinstance(value, dict | list) and value:
        try:
            encoded = pydantic_core.to_json(value)
        except ValueError:
            encoded = b"NaN"  # not serializable as it stands: look item by item
        suspicious = b"NaN" in encoded or b"Infinity" in encoded
    else:
        suspicious = False
    if suspicious:
        path = _path_to_non_finite(value)
        if path is not None:
            raise pydantic_core.PydanticCustomError(
                "non_finite_number",
                "NaN and Infinity are not JSON numbers",
                {"path": ".".join(_clip(part) for part in path)},
            )
    return value


def _path_to_non_finite(value: object) -> tuple[str, ...] | None:
    """Only runs once a bad number is suspected, so the error can point at it."""
    pending: list[tuple[object, tuple[str, ...]]] = [(value, ())]
    while pending:
        item, path = pending.pop()
        if isinstance(item, float) and not math.isfinite(item):
            return path
        if isinstance(item, dict):
            children = [(child, (*path, str(key))) for key, child in item.items()]
            pending.extend(reversed(children))  # report the first one in document order
        elif isinstance(item, list):
            children = [(child, (*path, str(index))) for index, child in enumerate(item)]
            pending.extend(reversed(children))
    return None


# Every JSON-valued field: any JSON, but only finite numbers.
_Json = Annotated[JsonValue, AfterValidator(_reject_non_finite)]
_JsonObject = Annotated[dict[str, JsonValue], AfterValidator(_reject_non_finite)]


class _Frame(BaseModel):
    """What every wire model shares.

    Frozen so a frame cannot change between validation and sending; extra fields forbidden
    so a misspelt field fails loudly instead of being dropped.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)


class ErrorInfo(_Frame):
    code: ErrorCode
    message: str
    details: _JsonObject = {}


class ProtocolError(Exception):
    """Anything wrong with a frame; carries what the `error` frame answering it needs."""

    def __init__(
        self,
        code: ErrorCode,
        message: str,
        *,
        field: str | None = None,
        request_id: str | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.field = field
        self.request_id = request_id
        self.details: dict[str, Any] = dict(details or {})

    def to_frame(self) -> ErrorFrame:
        details = dict(self.details)
        if self.field is not None:
            details["field"] = self.field
        return ErrorFrame(
            request_id=self.request_id, code=self.code, message=self.message, details=details
        )


class FrameTooLargeError(ProtocolError):
    """Raised rather than truncating: API Gateway would drop an oversized frame silently."""

    def __init__(
        self, size: int, *, limit: int = MAX_FRAME_BYTES, request_id: str | None = None
    ) -> None:
        super().__init__(
            ErrorCode.VALIDATION_ERROR,
            f"frame is {size} bytes, over the limit of {limit} bytes",
            request_id=request_id,
            details={"size": size, "limit": limit},
        )
        self.size = size
        self.limit = limit


# ---------------------------------------------------------------- client frames


class ClientFrame(_Frame):
    action: str = Field(pattern=ACTION_PATTERN)
    id: str = Field(default_factory=new_request_id, pattern=ID_PATTERN)
    payload: _JsonObject = {}
    metadata: dict[str, str] = {}


class TopicPayload(_Frame):
    topic: str = Field(pattern=TOPIC_PATTERN)


class RequestRefPayload(_Frame):
    request_id: str = Field(pattern=ID_PATTERN)


_BUILTIN_PAYLOADS: Final[dict[str, type[TopicPayload] | type[RequestRefPayload]]] = {
    "subscribe": TopicPayload,
    "unsubscribe": TopicPayload,
    "status": RequestRefPayload,
    "cancel": RequestRefPayload,
}


def builtin_payload(frame: ClientFrame) -> TopicPayload | RequestRefPayload | None:
    """Validate a built-in action's payload; user actions own their payload's shape."""
    model = _BUILTIN_PAYLOADS.get(frame.action)
    if model is None:
        return None
    try:
        return model.model_validate(frame.payload, strict=True)
    except ValidationError as exc:
        raise _from_validation_error(exc, request_id=frame.id, prefix="payload") from None


# ---------------------------------------------------------------- request state


class ProgressState(_Frame):
    percentage: float = Field(ge=0, le=100)
    message: str | None = None
    metadata: _JsonObject = {}
    seq: int = Field(ge=0)


class RequestSnapshot(_Frame):
    request_id: str
    action: str
    status: RequestStatus
    progress: ProgressState | None = None
    result: _Json = None
    error: ErrorInfo | None = None
    created_at: int
    updated_at: int


# ---------------------------------------------------------------- server frames


class AcknowledgmentFrame(_Frame):
    type: Literal["acknowledgment"] = "acknowledgment"
    request_id: str
    action: str
    status: RequestStatus = RequestStatus.QUEUED


class _ResultFrame(_Frame):
    """A request's result, answered at once (`response`) or at the end of a job (`complete`)."""

    type: str  # each frame narrows it to its own tag, which stays the first field on the wire
    request_id: str
    result: _Json = None


class ResponseFrame(_ResultFrame):
    type: Literal["response"] = "response"


class ProgressFrame(_Frame):
    type: Literal["progress"] = "progress"
    request_id: str
    percentage: float = Field(ge=0, le=100)
    message: str | None = None
    metadata: _JsonObject = {}
    seq: int = Field(ge=1)


class CompleteFrame(_ResultFrame):
    type: Literal["complete"] = "complete"


class ErrorFrame(_Frame):
    type: Literal["error"] = "error"
    request_id: str | None = None
    code: ErrorCode
    message: str
    details: _JsonObject = {}


class EventFrame(_Frame):
    type: Literal["event"] = "event"
    topic: str
    data: _Json = None
    id: str = Field(default_factory=new_request_id)
    published_at: int = Field(default_factory=_now_ms)


class SubscribedFrame(_Frame):
    type: Literal["subscribed"] = "subscribed"
    request_id: str
    topic: str


class UnsubscribedFrame(_Frame):
    type: Literal["unsubscribed"] = "unsubscribed"
    request_id: str
    topic: str


class PongFrame(_Frame):
    type: Literal["pong"] = "pong"
    request_id: str
    server_time: int = Field(default_factory=_now_ms)


class StatusFrame(_Frame):
    type: Literal["status"] = "status"
    request_id: str
    snapshot: RequestSnapshot


ServerFrame = Annotated[
    AcknowledgmentFrame
    | ResponseFrame
    | ProgressFrame
    | CompleteFrame
    | ErrorFrame
    | EventFrame
    | SubscribedFrame
    | UnsubscribedFrame
    | PongFrame
    | StatusFrame,
    Field(discriminator="type"),
]

_SERVER_FRAME_ADAPTER: Final[TypeAdapter[ServerFrame]] = TypeAdapter(ServerFrame)


# ---------------------------------------------------------------- parse / encode

_ID_MATCH: Final = re.compile(ID_PATTERN).fullmatch
# Maps '[' and ']' onto '{' and '}' and deletes every other byte, leaving only
# the bracket skeleton whose nesting is measured.
_BRACKETS: Final = bytes.maketrans(b"[]", b"{}")
_NOT_BRACKETS: Final = bytes(byte for byte in range(256) if byte not in b"[]{}")
_MAX_ECHO: Final = 64
_ID_SCAN_BYTES: Final = 4096
_TOP_LEVEL_ID_PATTERNS: Final = {
    key: re.compile(rf'"{key}"\s*:\s*"([A-Za-z0-9_.:-]{{1,128}})"(?=\s*[,}}])')
    for key in ("id", "request_id")
}


def parse_client_frame(data: str | bytes) -> ClientFrame:
    """Turn one WebSocket message from a client into a `ClientFrame`, or raise `ProtocolError`."""
    _check_raw(data, id_key="id")
    try:
        return ClientFrame.model_validate_json(data, strict=True)
    except ValidationError as exc:
        raise _from_validation_error(exc, request_id=_usable_id(data, "id")) from None


def parse_server_frame(data: str | bytes) -> ServerFrame:
    """Turn one WebSocket message from the server into its frame, or raise `ProtocolError`."""
    _check_raw(data, id_key="request_id")
    try:
        return _SERVER_FRAME_ADAPTER.validate_json(data, strict=True)
    except ValidationError as exc:
        raise _from_validation_error(
            exc, request_id=_usable_id(data, "request_id"), tagged=True
        ) from None


def encode(frame: BaseModel) -> str:
    """Serialize a frame as compact JSON that is guaranteed to fit in one WebSocket message."""
    try:
        text = frame.model_dump_json()
    except pydantic_core.PydanticSerializationError as exc:
        raise ProtocolError(
            ErrorCode.INTERNAL_ERROR, f"frame cannot be encoded as JSON: {exc}"
        ) from None
    size = len(text) if text.isascii() else len(text.encode("utf-8"))
    if size > MAX_FRAME_BYTES:
        request_id = getattr(frame, "request_id", None)
        raise FrameTooLargeError(
            size, request_id=request_id if isinstance(request_id, str) else None
        )
    return text


def _check_raw(data: str | bytes, *, id_key: str) -> None:
    """Enforce the limits pydantic does not, before any parsing work is spent."""
    if isinstance(data, str):
        if data.isascii():
            size = len(data)
        else:
            try:
                size = len(data.encode("utf-8"))
            except UnicodeEncodeError as exc:
                size = len(data.encode("utf-8", "surrogatepass"))
                if size <= MAX_FRAME_BYTES:
                    raise _invalid_text(f"frame is not valid UTF-8 text: {exc.reason}") from None
        if size > MAX_FRAME_BYTES:
            raise FrameTooLargeError(size, request_id=_prefix_id(data, id_key))
        brackets = data.count("{") + data.count("[")
    elif isinstance(data, bytes | bytearray):
        if len(data) > MAX_FRAME_BYTES:
            raise FrameTooLargeError(len(data), request_id=_prefix_id(data, id_key))
        if not data.isascii():
            try:
                data.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise _invalid_text(
                    f"frame is not valid UTF-8: {exc.reason} at byte {exc.start}"
                ) from None
        brackets = data.count(b"{") + data.count(b"[")
    else:
        raise _invalid_text(f"frame must be str or bytes, not {type(data).__name__}")
    # Each opening bracket adds at most one level: the common small frame needs
    # no closer look.
    if brackets > MAX_NESTING_DEPTH:
        _check_depth(data, id_key)


def _check_depth(data: str | bytes, id_key: str) -> None:
    """Measure nesting with C-speed string operations only, before the parser recurses.

    Every step is linear whatever the input: the text is not yet known to be
    JSON, so hostile text must not make this slow. On text that is not JSON
    the verdict may be wrong, and the parser then reports the real fault.
    """
    raw = data.encode("utf-8") if isinstance(data, str) else bytes(data)
    if b"\\" in raw:
        # Drop escape pairs so that no escaped quote is left to end a string early.
        raw = raw.replace(b"\\\\", b"").replace(b'\\"', b"")
    # Splitting on quotes alternates between outside and inside string literals.
    skeleton = b"".join(raw.split(b'"')[::2])
    brackets = skeleton.translate(_BRACKETS, _NOT_BRACKETS)
    # Each pass removes the innermost pairs, so the number of passes needed to
    # empty a balanced skeleton is exactly its nesting depth.
    for _ in range(MAX_NESTING_DEPTH):
        if not brackets:
            return
        inner_removed = brackets.replace(b"{}", b"")
        if len(inner_removed) == len(brackets):
            return  # unbalanced: not JSON, which the parser reports
        brackets = inner_removed
    if brackets:
        raise ProtocolError(
            ErrorCode.VALIDATION_ERROR,
            f"frame nests deeper than {MAX_NESTING_DEPTH} levels",
            request_id=_usable_id(data, id_key),
            details={"limit": MAX_NESTING_DEPTH},
        )


def _invalid_text(message: str) -> ProtocolError:
    return ProtocolError(ErrorCode.VALIDATION_ERROR, message)


def _usable_id(data: str | bytes, key: str) -> str | None:
    """The frame's own id when it is valid, so the error frame can answer that frame."""
    try:
        document = pydantic_core.from_json(data)
    except ValueError:
        return None
    if isinstance(document, dict):
        value = document.get(key)
        if isinstance(value, str) and _ID_MATCH(value):
            return value
    return None


def _prefix_id(data: str | bytes, key: str) -> str | None:
    """The id of an oversized frame, read from its first few KB without parsing it.

    A frame over the limit is never parsed (that is the point of the limit), yet its error
    should still answer the request it refuses. Clients put ``id`` near the start, so a
    regex over a bounded prefix finds it at a fixed cost; a match is used only at the top
    level of the object, so an ``id`` inside the payload is never mistaken for the frame's.
    """
    prefix = data[:_ID_SCAN_BYTES]
    text = prefix.decode("utf-8", "ignore") if isinstance(prefix, bytes | bytearray) else prefix
    pattern = _TOP_LEVEL_ID_PATTERNS.get(key)
    if pattern is None:
        return None
    for match in pattern.finditer(text):
        if _depth_before(text, match.start()) == 1:
            return match.group(1)
    return None


def _depth_before(text: str, end: int) -> int:
    """Nesting depth at ``end``: brackets outside string literals, escapes dropped first."""
    head = text[:end].replace("\\\\", "").replace('\\"', "")
    skeleton = "".join(head.split('"')[::2])
    return skeleton.count("{") + skeleton.count("[") - skeleton.count("}") - skeleton.count("]")


def _clip(value: object) -> str:
    text = str(value)
    return text if len(text) <= _MAX_ECHO else text[:_MAX_ECHO] + "..."


def _from_validation_error(
    exc: ValidationError,
    *,
    request_id: str | None,
    tagged: bool = False,
    prefix: str | None = None,
) -> ProtocolError:
    """Reword pydantic's first complaint so it names the field in the frame's own terms."""
    error = exc.errors(include_url=False, include_input=False)[0]
    kind = error["type"]
    ctx = error.get("ctx") or {}
    loc = error["loc"]
    if tagged and loc:
        loc = loc[1:]  # pydantic puts the union member's tag first
    parts = [_clip(part) for part in loc]
    if prefix is not None:
        parts.insert(0, prefix)
    if kind == "non_finite_number" and ctx.get("path"):
        parts.append(ctx["path"])
    field = ".".join(parts) or None

    if kind == "json_invalid":
        message = f"frame is not valid JSON: {ctx.get('error', error['msg'])}"
    elif kind in ("model_type", "dict_type", "model_attributes_type") and not loc:
        message = f"{prefix}: must be a JSON object" if prefix else "frame must be a JSON object"
    elif kind == "union_tag_not_found":
        field = "type"
        message = "type: missing; every server frame names its type"
    elif kind == "union_tag_invalid":
        field = "type"
        message = (
            f"type: unknown frame type {_clip(ctx.get('tag'))!r}; "
            f"expected one of {ctx.get('expected_tags')}"
        )
    elif kind == "extra_forbidden":
        message = f"{field}: unknown field"
    elif kind == "missing":
        message = f"{field}: required field missing"
    elif kind == "string_pattern_mismatch":
        message = f"{field}: must match {ctx.get('pattern')}"
    elif kind in ("non_finite_number", "finite_number"):
        message = f"{field}: NaN and Infinity are not JSON numbers"
    elif field is None:
        message = f"frame: {error['msg']}"
    else:
        message = f"{field}: {error['msg']}"
    return ProtocolError(ErrorCode.VALIDATION_ERROR, message, field=field, request_id=request_id)
