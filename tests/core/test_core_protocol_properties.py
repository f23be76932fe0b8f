"""Properties of the wire protocol over random frames and hostile bytes."""

from __future__ import annotations

import json
import re
import string
from collections.abc import Callable
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel
from streamer_core import (
    ID_PATTERN,
    MAX_NESTING_DEPTH,
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
    RequestSnapshot,
    RequestStatus,
    ResponseFrame,
    StatusFrame,
    SubscribedFrame,
    UnsubscribedFrame,
    encode,
    parse_client_frame,
    parse_server_frame,
)

PROPERTY = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# ------------------------------------------------------------------ strategies

# Quotes, backslashes, brackets and the letters of NaN/Infinity inside strings
# are what a text-level scanner could mistake for structure.
TRICKY = '"\\[]{}NaInfity:,\n\t\x00 é😀'
texts = st.one_of(st.text(max_size=12), st.text(alphabet=TRICKY, max_size=12))
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=-(2**80), max_value=2**80),
    st.floats(allow_nan=False, allow_infinity=False),
    texts,
)
json_values = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(texts, children, max_size=4),
    max_leaves=12,
)
json_objects = st.dictionaries(texts, json_values, max_size=4)

ID_ALPHABET = string.ascii_letters + string.digits + "_.:-"
ids = st.text(alphabet=ID_ALPHABET, min_size=1, max_size=128)
actions = st.builds(
    lambda first, rest: first + rest,
    st.sampled_from(string.ascii_lowercase),
    st.text(alphabet=string.ascii_lowercase + string.digits + "_.-", max_size=63),
)
topics = st.text(alphabet=ID_ALPHABET + "/", min_size=1, max_size=256)
epoch_ms = st.integers(min_value=0, max_value=2**53)
percentages = st.floats(min_value=0, max_value=100)
error_codes = st.sampled_from(ErrorCode)
statuses = st.sampled_from(RequestStatus)
any_text = st.text(max_size=40)

client_frames = st.builds(
    ClientFrame,
    action=actions,
    id=ids,
    payload=json_objects,
    metadata=st.dictionaries(any_text, any_text, max_size=3),
)

progress_states = st.builds(
    ProgressState,
    percentage=percentages,
    message=st.none() | any_text,
    metadata=json_objects,
    seq=st.integers(min_value=0, max_value=2**63),
)
error_infos = st.builds(ErrorInfo, code=error_codes, message=any_text, details=json_objects)
snapshots = st.builds(
    RequestSnapshot,
    request_id=ids,
    action=actions,
    status=statuses,
    progress=st.none() | progress_states,
    result=json_values,
    error=st.none() | error_infos,
    created_at=epoch_ms,
    updated_at=epoch_ms,
)
server_frames = st.one_of(
    st.builds(AcknowledgmentFrame, request_id=any_text, action=actions, status=statuses),
    st.builds(ResponseFrame, request_id=any_text, result=json_values),
    st.builds(
        ProgressFrame,
        request_id=any_text,
        percentage=percentages,
        message=st.none() | any_text,
        metadata=json_objects,
        seq=st.integers(min_value=1, max_value=2**63),
    ),
    st.builds(CompleteFrame, request_id=any_text, result=json_values),
    st.builds(
        ErrorFrame,
        request_id=st.none() | any_text,
        code=error_codes,
        message=any_text,
        details=json_objects,
    ),
    st.builds(EventFrame, topic=topics, data=json_values, id=ids, published_at=epoch_ms),
    st.builds(SubscribedFrame, request_id=any_text, topic=topics),
    st.builds(UnsubscribedFrame, request_id=any_text, topic=topics),
    st.builds(PongFrame, request_id=any_text, server_time=epoch_ms),
    st.builds(StatusFrame, request_id=any_text, snapshot=snapshots),
)


def depth_of(value: Any) -> int:
    """Nesting depth as the protocol counts it: a bare object or array is 1."""
    if isinstance(value, dict):
        return 1 + max((depth_of(child) for child in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((depth_of(child) for child in value), default=0)
    return 0


def outcome(parse: Callable[[str | bytes], BaseModel], data: str | bytes) -> Any:
    """The frame, or the ProtocolError raised instead; anything else escapes and fails."""
    try:
        return parse(data)
    except ProtocolError as error:
        return error


def expect_protocol_error_or_frame(
    parse: Callable[[str | bytes], BaseModel], data: str | bytes
) -> None:
    result = outcome(parse, data)
    if isinstance(result, ProtocolError):
        assert isinstance(result.code, ErrorCode)
        assert result.message
        if result.field is not None:
            assert result.to_frame().details["field"] == result.field
    else:
        assert isinstance(result, BaseModel)


# ------------------------------------------------------------------ round trips


@PROPERTY
@given(client_frames)
def test_client_frames_round_trip(frame: ClientFrame) -> None:
    text = encode(frame)
    assert parse_client_frame(text) == frame
    assert encode(parse_client_frame(text.encode())) == text


@PROPERTY
@given(server_frames)
def test_server_frames_round_trip(frame: BaseModel) -> None:
    text = encode(frame)
    parsed = parse_server_frame(text)
    assert type(parsed) is type(frame)
    assert parsed == frame
    # Equality alone would let True stand in for 1; the bytes must match too.
    assert encode(parse_server_frame(text.encode())) == text


# ------------------------------------------------------------------ hostile input


@PROPERTY
@given(st.binary(max_size=300))
def test_any_bytes_parse_or_raise_protocol_error(data: bytes) -> None:
    expect_protocol_error_or_frame(parse_client_frame, data)
    expect_protocol_error_or_frame(parse_server_frame, data)


@PROPERTY
@given(st.text(alphabet=st.characters(codec="utf-8") | st.sampled_from(TRICKY), max_size=300))
def test_any_text_parses_or_raises_protocol_error(data: str) -> None:
    expect_protocol_error_or_frame(parse_client_frame, data)
    expect_protocol_error_or_frame(parse_server_frame, data)


@PROPERTY
@given(st.text(alphabet='[]{}"\\:,01 NaInfity', max_size=400))
def test_bracket_soup_parses_or_raises_protocol_error(data: str) -> None:
    expect_protocol_error_or_frame(parse_client_frame, data)
    expect_protocol_error_or_frame(parse_server_frame, data)


# ------------------------------------------------------------------ near-valid frames

mutations = st.sampled_from(["replace", "delete", "add", "retype"])


def mutate_document(data: st.DataObject, document: dict[str, Any]) -> dict[str, Any]:
    mutated = dict(document)
    keys = sorted(mutated)
    kind = data.draw(mutations)
    if kind == "add" or not keys:
        mutated[data.draw(texts)] = data.draw(json_values)
        return mutated
    key = data.draw(st.sampled_from(keys))
    if kind == "delete":
        del mutated[key]
    elif kind == "replace":
        mutated[key] = data.draw(json_values)
    else:
        mutated[key] = data.draw(st.sampled_from([None, 0, -1, 1.5, "", "X", [], {}, True]))
    return mutated


def mutate_text(data: st.DataObject, text: str) -> str:
    position = data.draw(st.integers(min_value=0, max_value=len(text)))
    kind = data.draw(st.sampled_from(["insert", "delete", "truncate"]))
    if kind == "insert":
        return text[:position] + data.draw(st.sampled_from(TRICKY)) + text[position:]
    if kind == "delete":
        return text[:position] + text[position + 1 :]
    return text[:position]


@PROPERTY
@given(client_frames, st.data())
def test_client_frames_with_a_mutated_field(frame: ClientFrame, data: st.DataObject) -> None:
    document = mutate_document(data, frame.model_dump(mode="json"))
    result = outcome(parse_client_frame, json.dumps(document, ensure_ascii=False))
    if isinstance(result, ProtocolError) and not isinstance(result, FrameTooLargeError):
        assert result.code is ErrorCode.VALIDATION_ERROR
        frame_id = document.get("id")
        usable = isinstance(frame_id, str) and re.fullmatch(ID_PATTERN, frame_id)
        assert result.request_id == (frame_id if usable else None)


@PROPERTY
@given(server_frames, st.data())
def test_server_frames_with_a_mutated_field(frame: BaseModel, data: st.DataObject) -> None:
    document = mutate_document(data, frame.model_dump(mode="json"))
    expect_protocol_error_or_frame(parse_server_frame, json.dumps(document, ensure_ascii=False))


@PROPERTY
@given(client_frames | server_frames, st.data())
def test_frames_with_mutated_text(frame: BaseModel, data: st.DataObject) -> None:
    text = mutate_text(data, encode(frame))
    expect_protocol_error_or_frame(parse_client_frame, text)
    expect_protocol_error_or_frame(parse_server_frame, text.encode())


# ------------------------------------------------------------------ nesting limit


@PROPERTY
@given(json_values, st.integers(min_value=MAX_NESTING_DEPTH - 6, max_value=MAX_NESTING_DEPTH + 3))
def test_nesting_limit_is_exact(leaf: Any, wrappers: int) -> None:
    value = leaf
    for level in range(wrappers):
        value = [value] if level % 2 else {"k": value}
    document = {"action": "x", "payload": {"v": value}}
    text = json.dumps(document, ensure_ascii=False)
    result = outcome(parse_client_frame, text)
    if depth_of(document) <= MAX_NESTING_DEPTH:
        assert isinstance(result, ClientFrame)
        assert result.payload == {"v": value}
    else:
        assert isinstance(result, ProtocolError)
        assert "nests deeper" in result.message
