"""The wire protocol, frame by frame and fault by fault."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import pytest
import streamer_core
from streamer_core import (
    BUILTIN_ACTIONS,
    MAX_FRAME_BYTES,
    MAX_NESTING_DEPTH,
    TERMINAL_STATUSES,
    AcknowledgmentFrame,
    ClientFrame,
    CompleteFrame,
    ErrorCode,
    ErrorFrame,
    ErrorInfo,
    EventFrame,
    FrameTooLargeError,
    PongFrame,
    ProgressFrame,
    ProgressState,
    ProtocolError,
    RequestRefPayload,
    RequestSnapshot,
    RequestStatus,
    ResponseFrame,
    StatusFrame,
    SubscribedFrame,
    TopicPayload,
    UnsubscribedFrame,
    builtin_payload,
    encode,
    parse_client_frame,
    parse_server_frame,
)

ULID_CHARS = set("0123456789ABCDEFGHJKMNPQRSTVWXYZ")


def client_error(data: str | bytes) -> ProtocolError:
    with pytest.raises(ProtocolError) as caught:
        parse_client_frame(data)
    assert caught.value.code is ErrorCode.VALIDATION_ERROR
    return caught.value


def server_error(data: str | bytes) -> ProtocolError:
    with pytest.raises(ProtocolError) as caught:
        parse_server_frame(data)
    assert caught.value.code is ErrorCode.VALIDATION_ERROR
    return caught.value


def dumps(document: Any) -> str:
    return json.dumps(document, separators=(",", ":"), ensure_ascii=False)


def nested(depth: int) -> Any:
    """A JSON value that adds `depth` levels of nesting."""
    value: Any = 1
    for level in range(depth):
        value = [value] if level % 2 else {"k": value}
    return value


# ------------------------------------------------------------------ enums and constants


def test_error_codes_are_their_own_names() -> None:
    assert [code.value for code in ErrorCode] == [code.name for code in ErrorCode]
    assert {code.value for code in ErrorCode} == {
        "VALIDATION_ERROR",
        "UNAUTHORIZED",
        "FORBIDDEN",
        "NOT_FOUND",
        "CONFLICT",
        "RATE_LIMITED",
        "TIMEOUT",
        "INTERNAL_ERROR",
        "CANCELLED",
    }


def test_request_statuses_and_terminal_set() -> None:
    assert [status.value for status in RequestStatus] == [s.name for s in RequestStatus]
    assert {RequestStatus.COMPLETED, RequestStatus.FAILED, RequestStatus.CANCELLED} == (
        TERMINAL_STATUSES
    )


def test_limits_match_the_gateway() -> None:
    assert MAX_FRAME_BYTES == 131072
    assert MAX_NESTING_DEPTH == 32
    assert {"ping", "subscribe", "unsubscribe", "status", "cancel"} == BUILTIN_ACTIONS


def test_package_exports_resolve() -> None:
    for name in streamer_core.__all__:
        assert getattr(streamer_core, name) is not None


def test_the_package_exports_exactly_the_protocol() -> None:
    from streamer_core import protocol

    assert streamer_core.__all__ == protocol.__all__
    assert set(protocol.__all__) <= set(dir(streamer_core))
    assert streamer_core.ClientFrame is protocol.ClientFrame
    with pytest.raises(AttributeError):
        streamer_core.not_a_name  # noqa: B018


def test_importing_a_subpackage_does_not_load_the_protocol() -> None:
    code = (
        "import sys, streamer_core.auth, streamer_core.backoff; "
        "print(','.join(m for m in ('streamer_core.protocol', 'pydantic') if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == ""


def test_star_import_of_the_package_brings_the_protocol() -> None:
    namespace: dict[str, object] = {}
    exec("from streamer_core import *", namespace)
    assert {"ClientFrame", "encode", "ErrorCode"} <= set(namespace)


def test_importing_the_package_pulls_in_no_server_dependencies() -> None:
    code = (
        "import sys, streamer_core; "
        "bad = [m for m in sys.modules if m.split('.')[0] in ('jwt', 'boto3', 'botocore',"
        " 'cryptography') or m.startswith(('streamer_core.auth', 'streamer_core.storage'))]; "
        "print(','.join(bad))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == ""


# ------------------------------------------------------------------ client frames


def test_minimal_client_frame_gets_a_fresh_id_and_empty_maps() -> None:
    frame = parse_client_frame('{"action":"echo"}')
    assert frame.action == "echo"
    assert len(frame.id) == 26
    assert set(frame.id) <= ULID_CHARS
    assert frame.payload == {}
    assert frame.metadata == {}


def test_full_client_frame_from_str_and_bytes() -> None:
    document = {
        "action": "reports.generate_v2",
        "id": "client:req-1.a_b",
        "payload": {"n": 3, "x": 1.5, "tags": ["a", None, True], "deep": {"k": {}}},
        "metadata": {"trace": "abc", "lang": "fr"},
    }
    for data in (dumps(document), dumps(document).encode()):
        frame = parse_client_frame(data)
        assert frame.model_dump() == document


def test_client_frame_keeps_non_ascii_text() -> None:
    frame = parse_client_frame(dumps({"action": "echo", "payload": {"t": "héllo 😀 中文"}}))
    assert frame.payload == {"t": "héllo 😀 中文"}


def test_client_frame_is_frozen() -> None:
    frame = parse_client_frame('{"action":"echo"}')
    with pytest.raises(ValueError, match="frozen"):
        frame.action = "other"


@pytest.mark.parametrize(
    "action", ["a", "ping", "echo", "generate_report", "a.b-c_9", "a" + "b" * 63]
)
def test_valid_actions(action: str) -> None:
    assert parse_client_frame(dumps({"action": action})).action == action


@pytest.mark.parametrize(
    "action",
    ["", "A", "Echo", "1echo", "_echo", "-x", "a b", "a/b", "a#b", "é", "a" * 65, "ping\n"],
)
def test_invalid_actions_name_the_field(action: str) -> None:
    error = client_error(dumps({"action": action, "id": "req-1"}))
    assert error.field == "action"
    assert error.message.startswith("action:")
    assert error.request_id == "req-1"


@pytest.mark.parametrize("frame_id", ["a", "A-b_c.d:e", "0" * 128, "01M8732RMP3HHA0BVF5ZCR6YPC"])
def test_valid_ids(frame_id: str) -> None:
    assert parse_client_frame(dumps({"action": "x", "id": frame_id})).id == frame_id


@pytest.mark.parametrize("frame_id", ["", "a b", "a#b", "a/b", "a$b", "é", "0" * 129, "id\n"])
def test_invalid_ids_are_not_carried_back(frame_id: str) -> None:
    error = client_error(dumps({"action": "x", "id": frame_id}))
    assert error.field == "id"
    assert "id" in error.message
    assert error.request_id is None


def test_missing_action() -> None:
    error = client_error('{"id":"r1","payload":{}}')
    assert error.field == "action"
    assert "action" in error.message
    assert error.request_id == "r1"


def test_unknown_field_is_named_and_request_id_carried() -> None:
    error = client_error('{"action":"x","id":"r1","paylod":{}}')
    assert error.field == "paylod"
    assert error.message == "paylod: unknown field"
    assert error.request_id == "r1"


def test_unknown_field_with_a_huge_name_is_clipped_in_the_message() -> None:
    error = client_error(dumps({"action": "x", "k" * 10_000: 1}))
    assert error.field is not None
    assert len(error.message) < 200


@pytest.mark.parametrize(
    ("document", "field"),
    [
        ({"action": 1}, "action"),
        ({"action": None}, "action"),
        ({"action": ["x"]}, "action"),
        ({"action": "x", "id": 5}, "id"),
        ({"action": "x", "id": None}, "id"),
        ({"action": "x", "payload": []}, "payload"),
        ({"action": "x", "payload": "text"}, "payload"),
        ({"action": "x", "payload": None}, "payload"),
        ({"action": "x", "metadata": {"k": 1}}, "metadata.k"),
        ({"action": "x", "metadata": {"k": None}}, "metadata.k"),
        ({"action": "x", "metadata": []}, "metadata"),
    ],
)
def test_wrong_types_name_the_field(document: dict[str, Any], field: str) -> None:
    error = client_error(dumps(document))
    assert error.field == field
    assert error.message.startswith(f"{field}:")


@pytest.mark.parametrize("data", ["", " ", "{", '{"action":', '{"action":"x",}', "{'a':1}", "x"])
def test_malformed_json(data: str) -> None:
    error = client_error(data)
    assert error.message.startswith("frame is not valid JSON")
    assert error.request_id is None


@pytest.mark.parametrize("data", ["[]", '["action"]', "1", '"text"', "null", "true", "1.5"])
def test_top_level_must_be_an_object(data: str) -> None:
    assert client_error(data).message == "frame must be a JSON object"
    assert server_error(data).message == "frame must be a JSON object"


@pytest.mark.parametrize(
    "data",
    [b"\xff", b'{"action":"\xc3"}', b'{"action":"x","payload":{"t":"\xed\xa0\x80"}}'],
)
def test_invalid_utf8_bytes(data: bytes) -> None:
    assert "UTF-8" in client_error(data).message


def test_lone_surrogate_in_text() -> None:
    assert "UTF-8" in client_error('{"action":"x","payload":{"t":"\ud800"}}').message


def test_escaped_lone_surrogate_is_not_json() -> None:
    client_error('{"action":"x","payload":{"t":"\\ud800"}}')


def test_input_that_is_neither_text_nor_bytes() -> None:
    error = client_error(123)  # type: ignore[arg-type]
    assert "str or bytes" in error.message


# ------------------------------------------------------------------ size limit


def padded_client_frame(size: int, filler: str = "x") -> str:
    """A valid client frame of exactly `size` UTF-8 bytes."""
    room = size - len(dumps({"action": "x", "payload": {"t": ""}}))
    width = len(filler.encode())
    frame = dumps(
        {"action": "x", "payload": {"t": filler * (room // width) + "x" * (room % width)}}
    )
    assert len(frame.encode()) == size
    return frame


def test_frame_of_exactly_the_limit_parses() -> None:
    assert parse_client_frame(padded_client_frame(MAX_FRAME_BYTES)).action == "x"
    assert parse_client_frame(padded_client_frame(MAX_FRAME_BYTES).encode()).action == "x"


@pytest.mark.parametrize("as_bytes", [False, True])
def test_frame_one_byte_over_the_limit(as_bytes: bool) -> None:
    frame = padded_client_frame(MAX_FRAME_BYTES + 1)
    with pytest.raises(FrameTooLargeError) as caught:
        parse_client_frame(frame.encode() if as_bytes else frame)
    error = caught.value
    assert error.code is ErrorCode.VALIDATION_ERROR
    assert error.size == MAX_FRAME_BYTES + 1
    assert str(MAX_FRAME_BYTES + 1) in error.message
    assert str(MAX_FRAME_BYTES) in error.message


@pytest.mark.parametrize("as_bytes", [False, True])
def test_an_oversized_frame_answers_its_own_id(as_bytes: bool) -> None:
    frame = (
        '{"action": "echo", "id": "big-1", "payload": {"blob": "' + "x" * MAX_FRAME_BYTES + '"}}'
    )
    with pytest.raises(FrameTooLargeError) as caught:
        parse_client_frame(frame.encode() if as_bytes else frame)
    assert caught.value.request_id == "big-1"
    assert caught.value.to_frame().request_id == "big-1"


@pytest.mark.parametrize(
    "head",
    [
        '{"action": "echo", "payload": {"id": "inner", "blob": "',
        '{"action": "echo", "payload": {"list": [{"id": "inner"}], "blob": "',
        '{"action": "echo", "payload": {"note": "\\"id\\": \\"fake\\"", "blob": "',
        '{"action": "echo", "id": "not valid!", "payload": {"blob": "',
    ],
    ids=["nested-object", "nested-list", "inside-a-string", "invalid-id"],
)
def test_an_oversized_frame_never_borrows_an_id_that_is_not_its_own(head: str) -> None:
    frame = head + "x" * MAX_FRAME_BYTES + '"}, "id": "outer"}'
    with pytest.raises(FrameTooLargeError) as caught:
        parse_client_frame(frame)
    assert caught.value.request_id is None


def test_an_oversized_server_frame_answers_its_request_id() -> None:
    frame = '{"type": "complete", "request_id": "r-9", "result": "' + "x" * MAX_FRAME_BYTES + '"}'
    with pytest.raises(FrameTooLargeError) as caught:
        parse_server_frame(frame)
    assert caught.value.request_id == "r-9"


def test_size_counts_utf8_bytes_not_characters() -> None:
    frame = padded_client_frame(MAX_FRAME_BYTES + 2, filler="é")
    assert len(frame) < MAX_FRAME_BYTES
    with pytest.raises(FrameTooLargeError) as caught:
        parse_client_frame(frame)
    assert caught.value.size == MAX_FRAME_BYTES + 2


def test_size_is_checked_before_json() -> None:
    with pytest.raises(FrameTooLargeError):
        parse_client_frame("{" * (MAX_FRAME_BYTES + 1))
    with pytest.raises(FrameTooLargeError):
        parse_server_frame(b"\xff" * (MAX_FRAME_BYTES + 1))


def test_oversized_text_with_lone_surrogate_reports_size() -> None:
    with pytest.raises(FrameTooLargeError):
        parse_client_frame("\ud800" + "x" * MAX_FRAME_BYTES)


# ------------------------------------------------------------------ nesting


def test_nesting_at_the_limit_parses() -> None:
    # The frame object itself is level 1, payload level 2.
    frame = parse_client_frame(dumps({"action": "x", "payload": {"v": nested(30)}}))
    assert frame.action == "x"


def test_nesting_over_the_limit_is_refused_with_the_request_id() -> None:
    error = client_error(dumps({"action": "x", "id": "r1", "payload": {"v": nested(31)}}))
    assert "nests deeper than 32" in error.message
    assert error.request_id == "r1"
    error = server_error(dumps({"type": "response", "request_id": "r2", "result": nested(32)}))
    assert error.request_id == "r2"


def test_extreme_nesting_is_refused_quickly_and_cleanly() -> None:
    client_error('{"action":"x","payload":{"v":' + "[" * 60_000 + "]" * 60_000 + "}}")
    client_error("[" * MAX_FRAME_BYTES)


def test_many_shallow_containers_are_fine() -> None:
    rows = [{"a": [i], "b": {"c": i}} for i in range(500)]
    assert len(parse_client_frame(dumps({"action": "x", "payload": {"rows": rows}})).payload) == 1


def test_brackets_and_escapes_inside_strings_do_not_count_as_nesting() -> None:
    text = '[{\\"' * 40 + "\\\\" + '"]' * 40
    payload = {"t": text, "u": "\\" * 9 + '"[[['}
    frame = parse_client_frame(dumps({"action": "x", "payload": payload}))
    assert frame.payload == payload


def test_escaped_quote_does_not_end_a_string_for_the_nesting_scan() -> None:
    payload = {"t": '"' + "[" * 40 + "]" * 40, "u": "\\", "w": '\\"{{'}
    assert parse_client_frame(dumps({"action": "x", "payload": payload})).payload == payload
    too_deep = {"t": '"', "v": nested(31)}
    assert "nests deeper" in client_error(dumps({"action": "x", "payload": too_deep})).message


def test_unbalanced_brackets_are_reported_as_bad_json() -> None:
    error = client_error('{"action":"x","payload":{"v":' + "[" * 40 + "}}")
    assert error.message.startswith("frame is not valid JSON")


# ------------------------------------------------------------------ NaN and Infinity


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity", "1e400", "-1e400", "1e999"])
def test_non_finite_numbers_in_client_payload(literal: str) -> None:
    error = client_error('{"action":"x","id":"r1","payload":{"a":[1,{"b":' + literal + "}]}}")
    assert error.field == "payload.a.1.b"
    assert "NaN and Infinity" in error.message
    assert error.request_id == "r1"


@pytest.mark.parametrize("literal", ["nan", "inf", "+Infinity", "-NaN", "Inf"])
def test_other_spellings_are_not_json(literal: str) -> None:
    client_error('{"action":"x","payload":{"a":' + literal + "}}")


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ('{"type":"response","request_id":"r","result":NaN}', "result"),
        ('{"type":"complete","request_id":"r","result":{"x":[Infinity]}}', "result.x.0"),
        ('{"type":"event","topic":"t","data":-Infinity}', "data"),
        ('{"type":"progress","request_id":"r","percentage":NaN,"seq":1}', "percentage"),
        (
            '{"type":"progress","request_id":"r","percentage":1,"seq":1,"metadata":{"m":1e400}}',
            "metadata.m",
        ),
        ('{"type":"error","code":"TIMEOUT","message":"m","details":{"d":NaN}}', "details.d"),
    ],
)
def test_non_finite_numbers_in_server_frames(data: str, field: str) -> None:
    assert server_error(data).field == field


def test_the_first_non_finite_number_is_the_one_reported() -> None:
    error = client_error('{"action":"x","payload":{"a":[1,NaN,NaN],"b":Infinity}}')
    assert error.field == "payload.a.1"


def test_words_nan_and_infinity_inside_strings_are_fine() -> None:
    payload = {"NaN": "Infinity", "x": 'say \\"NaN\\"', "n": -1.5e300}
    assert parse_client_frame(dumps({"action": "x", "payload": payload})).payload == payload


def test_frames_built_in_code_refuse_non_finite_numbers() -> None:
    with pytest.raises(ValueError, match="finite"):
        ResponseFrame(request_id="r", result={"x": float("nan")})
    with pytest.raises(ValueError, match="finite"):
        ProgressFrame(request_id="r", percentage=float("inf"), seq=1)


# ------------------------------------------------------------------ built-in payloads


@pytest.mark.parametrize("action", ["subscribe", "unsubscribe"])
def test_topic_payload(action: str) -> None:
    frame = parse_client_frame(dumps({"action": action, "payload": {"topic": "news/eu:fr.a_b-c"}}))
    assert builtin_payload(frame) == TopicPayload(topic="news/eu:fr.a_b-c")


@pytest.mark.parametrize("action", ["status", "cancel"])
def test_request_ref_payload(action: str) -> None:
    frame = parse_client_frame(dumps({"action": action, "payload": {"request_id": "r-9"}}))
    assert builtin_payload(frame) == RequestRefPayload(request_id="r-9")


@pytest.mark.parametrize("action", ["ping", "echo", "subscribe_all"])
def test_no_builtin_payload_for_ping_and_user_actions(action: str) -> None:
    frame = parse_client_frame(dumps({"action": action, "payload": {"anything": [1]}}))
    assert builtin_payload(frame) is None


@pytest.mark.parametrize(
    ("action", "payload", "field"),
    [
        ("subscribe", {}, "payload.topic"),
        ("subscribe", {"topic": ""}, "payload.topic"),
        ("subscribe", {"topic": "a#b"}, "payload.topic"),
        ("subscribe", {"topic": "$connect"}, "payload.topic"),
        ("subscribe", {"topic": "a b"}, "payload.topic"),
        ("subscribe", {"topic": "t" * 257}, "payload.topic"),
        ("unsubscribe", {"topic": 5}, "payload.topic"),
        ("subscribe", {"topic": "t", "extra": 1}, "payload.extra"),
        ("status", {}, "payload.request_id"),
        ("status", {"request_id": "a b"}, "payload.request_id"),
        ("cancel", {"request_id": None}, "payload.request_id"),
        ("cancel", {"request_id": "r" * 129}, "payload.request_id"),
    ],
)
def test_bad_builtin_payloads(action: str, payload: dict[str, Any], field: str) -> None:
    frame = parse_client_frame(dumps({"action": action, "id": "req-7", "payload": payload}))
    with pytest.raises(ProtocolError) as caught:
        builtin_payload(frame)
    error = caught.value
    assert error.code is ErrorCode.VALIDATION_ERROR
    assert error.field == field
    assert error.message.startswith(field)
    assert error.request_id == "req-7"


def test_topic_of_maximum_length() -> None:
    frame = parse_client_frame(dumps({"action": "subscribe", "payload": {"topic": "t" * 256}}))
    assert builtin_payload(frame) == TopicPayload(topic="t" * 256)


# ------------------------------------------------------------------ server frames

SNAPSHOT = {
    "request_id": "r1",
    "action": "generate_report",
    "status": "PROCESSING",
    "progress": {"percentage": 40.0, "message": "halfway", "metadata": {"rows": 4}, "seq": 3},
    "result": None,
    "error": None,
    "created_at": 1_800_000_000_000,
    "updated_at": 1_800_000_001_000,
}

SERVER_EXAMPLES: list[tuple[dict[str, Any], type]] = [
    (
        {"type": "acknowledgment", "request_id": "r1", "action": "a", "status": "QUEUED"},
        AcknowledgmentFrame,
    ),
    ({"type": "response", "request_id": "r1", "result": {"echo": [1, "x"]}}, ResponseFrame),
    (
        {
            "type": "progress",
            "request_id": "r1",
            "percentage": 12.5,
            "message": None,
            "metadata": {},
            "seq": 1,
        },
        ProgressFrame,
    ),
    ({"type": "complete", "request_id": "r1", "result": "done"}, CompleteFrame),
    (
        {
            "type": "error",
            "request_id": None,
            "code": "RATE_LIMITED",
            "message": "slow down",
            "details": {"retry_after": 3},
        },
        ErrorFrame,
    ),
    (
        {"type": "event", "topic": "t/1", "data": [1], "id": "e1", "published_at": 1},
        EventFrame,
    ),
    ({"type": "subscribed", "request_id": "r1", "topic": "t"}, SubscribedFrame),
    ({"type": "unsubscribed", "request_id": "r1", "topic": "t"}, UnsubscribedFrame),
    ({"type": "pong", "request_id": "r1", "server_time": 5}, PongFrame),
    ({"type": "status", "request_id": "r2", "snapshot": SNAPSHOT}, StatusFrame),
]


@pytest.mark.parametrize(("document", "model"), SERVER_EXAMPLES)
def test_every_server_frame_parses_and_encodes_back(document: dict[str, Any], model: type) -> None:
    frame = parse_server_frame(dumps(document))
    assert type(frame) is model
    assert frame.model_dump(mode="json") == document
    assert json.loads(encode(frame)) == document
    assert parse_server_frame(encode(frame).encode()) == frame


def test_all_ten_server_frame_types_are_covered() -> None:
    assert len({document["type"] for document, _ in SERVER_EXAMPLES}) == 10


def test_server_frame_defaults() -> None:
    assert AcknowledgmentFrame(request_id="r", action="a").status is RequestStatus.QUEUED
    assert ResponseFrame(request_id="r").result is None
    event = EventFrame(topic="t")
    assert len(event.id) == 26
    assert event.published_at > 1_700_000_000_000
    assert PongFrame(request_id="r").server_time > 1_700_000_000_000
    progress = ProgressFrame(request_id="r", percentage=0, seq=1)
    assert progress.message is None
    assert progress.metadata == {}


def test_minimal_server_frames_parse_with_defaults() -> None:
    frame = parse_server_frame('{"type":"acknowledgment","request_id":"r","action":"a"}')
    assert frame == AcknowledgmentFrame(request_id="r", action="a")
    error = parse_server_frame('{"type":"error","code":"TIMEOUT","message":"late"}')
    assert error == ErrorFrame(code=ErrorCode.TIMEOUT, message="late")


def test_integer_percentage_is_accepted_as_float() -> None:
    frame = parse_server_frame('{"type":"progress","request_id":"r","percentage":50,"seq":2}')
    assert isinstance(frame, ProgressFrame)
    assert frame.percentage == 50.0


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ('{"type":"telepathy","request_id":"r"}', "type"),
        ('{"request_id":"r"}', "type"),
        ('{"type":5,"request_id":"r"}', "type"),
        ('{"type":"progress","request_id":"r","percentage":101,"seq":1}', "percentage"),
        ('{"type":"progress","request_id":"r","percentage":-0.1,"seq":1}', "percentage"),
        ('{"type":"progress","request_id":"r","percentage":5,"seq":0}', "seq"),
        ('{"type":"progress","request_id":"r","percentage":5,"seq":"1"}', "seq"),
        ('{"type":"progress","request_id":"r","percentage":5,"seq":1.0}', "seq"),
        ('{"type":"progress","request_id":"r","percentage":5,"seq":true}', "seq"),
        ('{"type":"progress","request_id":"r","percentage":"5","seq":1}', "percentage"),
        ('{"type":"pong","request_id":"r","server_time":1,"extra":1}', "extra"),
        ('{"type":"error","request_id":"r","code":"OOPS","message":"m"}', "code"),
        ('{"type":"acknowledgment","request_id":"r","action":"a","status":"queued"}', "status"),
        ('{"type":"response","request_id":7}', "request_id"),
        ('{"type":"subscribed","request_id":"r"}', "topic"),
        ('{"type":"status","request_id":"r","snapshot":{}}', "snapshot.request_id"),
    ],
)
def test_bad_server_frames_name_the_field(data: str, field: str) -> None:
    error = server_error(data)
    assert error.field == field
    assert error.message.startswith(f"{field}:")


def test_bad_nested_snapshot_field_names_its_path() -> None:
    snapshot = dict(SNAPSHOT, status="NOPE")
    error = server_error(dumps({"type": "status", "request_id": "r2", "snapshot": snapshot}))
    assert error.field == "snapshot.status"
    assert error.request_id == "r2"


def test_unknown_type_message_lists_the_known_ones_without_echoing_a_huge_tag() -> None:
    error = server_error(dumps({"type": "t" * 5000}))
    assert "acknowledgment" in error.message
    assert len(error.message) < 400


# ------------------------------------------------------------------ encode


def test_encode_is_compact_json() -> None:
    text = encode(AcknowledgmentFrame(request_id="r", action="a"))
    assert text == '{"type":"acknowledgment","request_id":"r","action":"a","status":"QUEUED"}'


def test_encode_keeps_non_ascii_as_utf8() -> None:
    assert "é" in encode(ResponseFrame(request_id="r", result="é"))


def response_of_size(size: int, filler: str = "x") -> ResponseFrame:
    overhead = len(encode(ResponseFrame(request_id="r", result="")).encode())
    room = size - overhead
    width = len(filler.encode())
    return ResponseFrame(request_id="r", result=filler * (room // width) + "x" * (room % width))


def test_encode_at_the_limit() -> None:
    assert len(encode(response_of_size(MAX_FRAME_BYTES)).encode()) == MAX_FRAME_BYTES


def test_encode_over_the_limit_raises_with_size_and_request_id() -> None:
    with pytest.raises(FrameTooLargeError) as caught:
        encode(response_of_size(MAX_FRAME_BYTES + 1))
    error = caught.value
    assert error.size == MAX_FRAME_BYTES + 1
    assert error.request_id == "r"
    assert f"{MAX_FRAME_BYTES + 1} bytes" in error.message
    assert str(MAX_FRAME_BYTES) in error.message


def test_encode_measures_utf8_bytes() -> None:
    frame = response_of_size(MAX_FRAME_BYTES + 1, filler="€")
    assert isinstance(frame.result, str)
    assert len(frame.result) < MAX_FRAME_BYTES // 2
    with pytest.raises(FrameTooLargeError):
        encode(frame)


def test_encode_oversized_event_has_no_request_id() -> None:
    with pytest.raises(FrameTooLargeError) as caught:
        encode(EventFrame(topic="t", data="x" * MAX_FRAME_BYTES))
    assert caught.value.request_id is None


def test_encode_client_frame() -> None:
    frame = ClientFrame(action="echo", id="r1", payload={"a": 1}, metadata={"k": "v"})
    assert encode(frame) == '{"action":"echo","id":"r1","payload":{"a":1},"metadata":{"k":"v"}}'


def test_encode_unencodable_text_is_a_protocol_error() -> None:
    with pytest.raises(ProtocolError) as caught:
        encode(ResponseFrame(request_id="r", result="\ud800"))
    assert caught.value.code is ErrorCode.INTERNAL_ERROR


# ------------------------------------------------------------------ errors as frames


def test_protocol_error_to_frame_adds_the_field() -> None:
    error = ProtocolError(
        ErrorCode.VALIDATION_ERROR,
        "payload.topic: must match",
        field="payload.topic",
        request_id="r1",
        details={"hint": "no #"},
    )
    frame = error.to_frame()
    assert frame == ErrorFrame(
        request_id="r1",
        code=ErrorCode.VALIDATION_ERROR,
        message="payload.topic: must match",
        details={"hint": "no #", "field": "payload.topic"},
    )
    assert error.details == {"hint": "no #"}
    assert str(error) == "payload.topic: must match"


def test_protocol_error_without_field_has_no_field_detail() -> None:
    frame = ProtocolError(ErrorCode.FORBIDDEN, "no").to_frame()
    assert frame.details == {}
    assert frame.request_id is None


def test_parse_error_round_trips_as_an_error_frame() -> None:
    error = client_error('{"action":"Bad","id":"r1"}')
    frame = parse_server_frame(encode(error.to_frame()))
    assert isinstance(frame, ErrorFrame)
    assert frame.request_id == "r1"
    assert frame.code is ErrorCode.VALIDATION_ERROR
    assert frame.details == {"field": "action"}


def test_frame_too_large_error_frame_carries_size_and_limit() -> None:
    frame = FrameTooLargeError(200_000, request_id="r").to_frame()
    assert frame.details == {"size": 200_000, "limit": MAX_FRAME_BYTES}
    assert frame.request_id == "r"


# ------------------------------------------------------------------ request state models


def test_snapshot_round_trip_with_error() -> None:
    snapshot = RequestSnapshot(
        request_id="r",
        action="a",
        status=RequestStatus.FAILED,
        error=ErrorInfo(code=ErrorCode.TIMEOUT, message="took too long", details={"s": 900}),
        created_at=1,
        updated_at=2,
    )
    frame = parse_server_frame(encode(StatusFrame(request_id="q", snapshot=snapshot)))
    assert isinstance(frame, StatusFrame)
    assert frame.snapshot == snapshot


def test_progress_state_bounds() -> None:
    assert ProgressState(percentage=100, seq=0).message is None
    with pytest.raises(ValueError, match="100"):
        ProgressState(percentage=100.5, seq=1)
