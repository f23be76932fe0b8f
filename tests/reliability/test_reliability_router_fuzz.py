"""The router under hostile input: whatever arrives, the caller gets one structured frame back.

API Gateway hands the router any bytes a client sends. A crash there would answer with the
gateway's bare "Internal server error", a hang would hold a Lambda for its timeout; either
leaves a client without an answer to its request id. The router must instead answer every
message with a well-formed server frame, agree with the protocol parser on what is invalid,
and keep the connection usable for the next message.
"""

from __future__ import annotations

import itertools
import json
import re
from typing import Any

import pytest
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st
from reliability_support import Harness, LogTap, build_harness, fuzz_app
from streamer_core import (
    ID_PATTERN,
    MAX_FRAME_BYTES,
    ErrorCode,
    ErrorFrame,
    ProtocolError,
    parse_client_frame,
    parse_server_frame,
)

FUZZ = settings(
    max_examples=400,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
ROUTER_FAILURES = ("message could not be handled", "message could not be routed")
_ID = re.compile(ID_PATTERN)

# ----------------------------------------------------------------------------- strategies

KNOWN_ACTIONS = [
    *("ping", "echo", "subscribe", "unsubscribe", "status", "cancel"),
    *("generate_report", "admin.purge", "strict"),
]
TRICKY = '"\\[]{}:,.#$/NaInfity-_\n\t\x00 é😀\ud7ff'
texts = st.one_of(st.text(max_size=16), st.text(alphabet=TRICKY, max_size=16))
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    texts,
)
json_values = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(texts, children, max_size=4),
    max_leaves=10,
)
ids = st.one_of(
    st.from_regex(r"\A[A-Za-z0-9_.:-]{1,40}\Z"),
    st.sampled_from(["", " ", "a b", "x" * 129, "id/slash", "id#hash", "ümlaut", "$id"]),
)
topics = st.one_of(
    st.from_regex(r"\A[A-Za-z0-9_.:/-]{1,40}\Z"),
    st.sampled_from(["", "a#b", "$request/x/y", "t" * 257, "with space", "ü"]),
)
actions = st.one_of(
    st.sampled_from([*KNOWN_ACTIONS, "no_such_action", "PING", "Echo", "$default", ""]),
    st.from_regex(r"\A[a-z][a-z0-9_.-]{0,10}\Z"),
    texts,
)


@st.composite
def valid_frames(draw: st.DrawFn) -> dict[str, Any]:
    """A frame the protocol accepts, for an action the app or the built-ins know."""
    frame_id = draw(st.from_regex(r"\A[A-Za-z0-9_.:-]{1,40}\Z"))
    kind = draw(st.sampled_from(KNOWN_ACTIONS))
    payload: dict[str, Any]
    if kind in ("subscribe", "unsubscribe"):
        payload = {"topic": draw(st.from_regex(r"\A[A-Za-z0-9_.:/-]{1,40}\Z"))}
    elif kind in ("status", "cancel"):
        payload = {"request_id": draw(st.from_regex(r"\A[A-Za-z0-9_.:-]{1,40}\Z"))}
    elif kind == "ping":
        payload = {}
    else:
        payload = draw(st.dictionaries(texts, json_values, max_size=4))
    frame: dict[str, Any] = {"action": kind, "id": frame_id, "payload": payload}
    if draw(st.booleans()):
        frame["metadata"] = draw(st.dictionaries(texts, texts, max_size=3))
    return frame


@st.composite
def near_valid_bodies(draw: st.DrawFn) -> str | bytes:
    """A valid frame with one or two things wrong, the way buggy or hostile clients send them."""
    frame = draw(valid_frames())
    for _ in range(draw(st.integers(min_value=1, max_value=2))):
        mutation = draw(
            st.sampled_from(
                ["drop", "retype", "extra", "payload_field", "action", "id", "nest", "metadata"]
            )
        )
        if mutation == "drop":
            frame.pop(draw(st.sampled_from(["action", "id", "payload"])), None)
        elif mutation == "retype":
            frame[draw(st.sampled_from(["action", "id", "payload", "metadata"]))] = draw(
                json_values
            )
        elif mutation == "extra":
            frame[draw(texts)] = draw(json_values)
        elif mutation == "payload_field":
            payload = frame.get("payload")
            if isinstance(payload, dict):
                name = draw(st.sampled_from(["topic", "request_id", "steps", "name"]))
                payload[name] = draw(st.one_of(json_values, topics, ids))
        elif mutation == "action":
            frame["action"] = draw(actions)
        elif mutation == "id":
            frame["id"] = draw(ids)
        elif mutation == "nest":
            depth = draw(st.integers(min_value=20, max_value=60))
            frame["payload"] = {"deep": json.loads("[" * depth + "]" * depth)}
        else:
            frame["metadata"] = draw(st.dictionaries(texts, json_values, max_size=3))
    text = json.dumps(frame, ensure_ascii=draw(st.booleans()))
    damage = draw(
        st.sampled_from(["none", "none", "truncate", "trailing", "nan", "dup", "pad", "bytes"])
    )
    if damage == "truncate" and len(text) > 1:
        text = text[: draw(st.integers(min_value=1, max_value=len(text) - 1))]
    elif damage == "trailing":
        text += draw(st.sampled_from(["}", " x", "\x00", ",", "{}"]))
    elif damage == "nan":
        text = text.replace("{", '{"n": NaN, ', 1)
    elif damage == "dup":
        text = text.replace("{", '{"action": "ping", ', 1)
    elif damage == "pad":
        # Past the 128 KB limit: refused on size before anything is parsed.
        text = text.replace("{", '{"pad": "' + "p" * MAX_FRAME_BYTES + '", ', 1)
    elif damage == "bytes":
        raw = text.encode("utf-8")
        cut = draw(st.integers(min_value=0, max_value=len(raw)))
        return raw[:cut] + draw(st.sampled_from([b"\xff", b"\xc3", b"\xed\xa0\x80", b"\x00"]))
    return text.encode("utf-8") if draw(st.booleans()) else text


bodies = st.one_of(
    valid_frames().map(json.dumps),
    st.binary(max_size=200),
    st.text(max_size=200),
    st.sampled_from(["", "{}", "[]", "null", "0", '"ping"', '{"action": "ping"}', "{" * 5000]),
    near_valid_bodies(),
)

# ----------------------------------------------------------------------------- the property


@pytest.fixture
def fuzzed(
    aws: dict[str, Any], signing_keys: tuple[str, str], installed_runtime: None
) -> tuple[Harness, dict[str, str]]:
    """One harness and two connections that every example shares, as one client would.

    ``verified`` carries the authorizer context (AWS); ``stored`` has none, so the router
    falls back to the connection record (a gateway without an authorizer).
    """
    harness = build_harness(aws, signing_keys, fuzz_app())
    verified = harness.connect("fuzzer", "acme")
    stored = harness.connect("fuzzer", "acme")
    del harness.authorizers[stored]
    return harness, {"verified": verified, "stored": stored}


def _expected_rejection(body: str | bytes) -> ProtocolError | None:
    try:
        parse_client_frame(body)
    except ProtocolError as error:
        return error
    return None


_counter = itertools.count()


@FUZZ
@given(body=bodies, which=st.sampled_from(["verified", "stored"]))
# The protocol accepts any string keys in metadata, the empty one included.
@example(
    body='{"action":"generate_report","id":"meta-1","payload":{},"metadata":{"":"x"}}',
    which="verified",
)
def test_every_message_gets_one_structured_frame_and_the_connection_stays_usable(
    fuzzed: tuple[Harness, dict[str, str]], log_tap: LogTap, body: str | bytes, which: str
) -> None:
    """Any body: a parseable server frame; invalid input the parser's own error; then pong."""
    harness, connections = fuzzed
    connection_id = connections[which]
    logged_before = len(log_tap.text())
    posted_before = len(harness.sender.frames(connection_id))

    reply = harness.send_raw(connection_id, body)
    frame = parse_server_frame(json.dumps(reply))  # structured: one of the documented frames
    event(f"answer {reply['type']} {reply.get('code') or ''}".rstrip())

    rejection = _expected_rejection(body)
    if rejection is not None:
        assert isinstance(frame, ErrorFrame), reply
        assert frame.code is ErrorCode.VALIDATION_ERROR, reply
        assert frame.request_id == rejection.request_id, (reply, rejection.request_id)
    else:
        sent = parse_client_frame(body)
        answered = getattr(frame, "request_id", None)
        if "id" in json.loads(body):
            assert answered == sent.id, reply
        else:
            # No id sent: the server names the request, and says which name it chose.
            assert isinstance(answered, str), reply
            assert _ID.fullmatch(answered), reply
            sent = sent.model_copy(update={"id": answered})
        if isinstance(frame, ErrorFrame):
            assert frame.code is not ErrorCode.INTERNAL_ERROR, reply
            assert frame.message
        if frame.type == "acknowledgment":
            # Accepted work must run to an end the client can read back.
            harness.drain()
            status = harness.send(
                connection_id, "status", {"request_id": sent.id}, id=f"status-{next(_counter)}"
            )
            assert status["type"] == "status", status
            assert status["snapshot"]["status"] in ("COMPLETED", "FAILED"), status
            ends = [
                f
                for f in harness.sender.frames(connection_id)[posted_before:]
                if f.get("request_id") == sent.id and f["type"] in ("complete", "error")
            ]
            # A resent id is answered with the stored status and makes no second job.
            assert len(ends) == (1 if reply["status"] == "QUEUED" else 0), (reply, ends)

    marker = f"after-{next(_counter)}"
    pong = harness.send(connection_id, "ping", id=marker)
    assert (pong["type"], pong["request_id"]) == ("pong", marker)
    logged = log_tap.text()[logged_before:]
    assert not any(failure in logged for failure in ROUTER_FAILURES), logged[-2000:]


def test_the_fuzzer_reaches_every_kind_of_answer(
    fuzzed: tuple[Harness, dict[str, str]],
) -> None:
    """The property above means little if its inputs never got past the parser.

    Hand-picked members of each strategy family must draw every answer the router can give,
    which shows that the generated space covers valid replies as well as each error path.
    """
    harness, connections = fuzzed
    connection_id = connections["verified"]
    samples: list[str | bytes] = [
        b"\xff\xfe",
        "not json",
        '{"action": "ping", "id": "p1", "payload": {}}',
        '{"action": "echo", "id": "e1", "payload": {"x": [1, 2.5, null]}}',
        '{"action": "subscribe", "id": "s1", "payload": {"topic": "a/b"}}',
        '{"action": "status", "id": "st1", "payload": {"request_id": "nope"}}',
        '{"action": "admin.purge", "id": "f1"}',
        '{"action": "strict", "id": "v1", "payload": {}}',
        '{"action": "no_such_action", "id": "n1"}',
        '{"action": "generate_report", "id": "g1", "payload": {"steps": 1}}',
    ]
    answers = set()
    for body in samples:
        reply = harness.send_raw(connection_id, body)
        answers.add((reply["type"], reply.get("code")))
    assert answers >= {
        ("error", "VALIDATION_ERROR"),
        ("pong", None),
        ("response", None),
        ("subscribed", None),
        ("error", "NOT_FOUND"),
        ("error", "FORBIDDEN"),
        ("acknowledgment", None),
    }
