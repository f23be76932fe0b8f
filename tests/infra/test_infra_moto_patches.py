"""The emulator's patches to moto stay inside the emulator.

They are in place only while an emulator runs, act only on the threads answering its
requests, and a stopped emulator leaves every moto class exactly as moto defined it: moto
used in-process (`mock_aws`, as the core storage tests use it) behaves the same whether a
stack ran earlier in the process or not.
"""

from __future__ import annotations

import asyncio
import socket
import threading
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config
from moto import mock_aws
from streamer_core.auth import generate_key_pair
from streamer_infra.local import DevKeys, LocalStack, LocalStackConfig
from streamer_infra.local import _atomic_dynamodb as atomic_dynamodb
from streamer_infra.local import _moto_speedups as moto_speedups
from streamer_infra.local._atomic_dynamodb import ATOMIC_DYNAMODB
from streamer_infra.local._emulator import AwsEmulator, shared_emulator, stop_shared_emulator
from streamer_infra.local._moto_patches import MotoPatches, Patch, serving, serving_request
from streamer_infra.local._moto_speedups import MOTO_SPEEDUPS

# -- the mechanism -----------------------------------------------------------------------


class _Base:
    def inherited(self) -> str:
        return "base"


class _Target(_Base):
    def method(self) -> str:
        return "own"

    @property
    def prop(self) -> str:
        return "own"


def _wrap(original: Any) -> Any:
    def patched(self: Any) -> str:
        return "patched" if serving_request() else original(self)

    return patched


def _wrap_property(original: property) -> property:
    return property(lambda self: "patched" if serving_request() else original.fget(self))  # type: ignore[misc]


def _target_patches() -> list[Patch | None]:
    return [
        Patch(_Target, "method", _wrap),
        Patch(_Target, "inherited", _wrap),
        Patch(_Target, "prop", _wrap_property),
    ]


def _answers(target: _Target) -> tuple[str, str, str]:
    return target.method(), target.inherited(), target.prop


def test_a_patch_set_is_counted_and_undone_to_the_very_attributes_it_replaced() -> None:
    before = dict(vars(_Target))
    patches = MotoPatches(_target_patches)
    target = _Target()

    assert patches.install()
    assert patches.install()
    with serving():
        assert _answers(target) == ("patched", "patched", "patched")
    patches.uninstall()
    assert patches.installed
    with serving():
        assert _answers(target) == ("patched", "patched", "patched")
    patches.uninstall()

    assert not patches.installed
    assert dict(vars(_Target)) == before  # the inherited method is inherited again
    with serving():
        assert _answers(target) == ("own", "base", "own")
    patches.uninstall()  # one too many changes nothing
    assert dict(vars(_Target)) == before


def test_a_missing_hook_leaves_the_others_in_place() -> None:
    before = dict(vars(_Target))
    patches = MotoPatches(lambda: [Patch(_Target, "method", _wrap), None])
    with patches.applied() as complete, serving():
        assert not complete
        assert _answers(_Target()) == ("patched", "base", "own")
    assert dict(vars(_Target)) == before


def test_replacements_act_only_on_the_thread_that_serves() -> None:
    seen: list[tuple[str, str, str]] = []
    target = _Target()
    with MotoPatches(_target_patches).applied(), serving():
        with serving():
            assert serving_request()
        assert serving_request()  # a nested block gives back what it found
        other = threading.Thread(target=lambda: seen.append(_answers(target)))
        other.start()
        other.join()
        assert _answers(target) == ("patched", "patched", "patched")
    assert not serving_request()
    assert seen == [("own", "base", "own")]


# -- moto's own classes ---------------------------------------------------------------------


def _moto_classes() -> list[type]:
    from moto.core.serialize import BaseJSONSerializer
    from moto.dynamodb.models.dynamo_type import DynamoType, Item
    from moto.dynamodb.responses import DynamoHandler

    return [BaseJSONSerializer, DynamoHandler, DynamoType, Item]


def _moto_as_defined() -> dict[type, dict[str, Any]]:
    """The methods and properties of the classes the emulator patches (moto itself keeps
    data on some of them, such as the instances it tracks)."""
    return {
        cls: {
            name: attribute
            for name, attribute in vars(cls).items()
            if callable(attribute) or isinstance(attribute, property | classmethod | staticmethod)
        }
        for cls in _moto_classes()
    }


PATCHED = {
    ("BaseJSONSerializer", "_serialize_type_structure"),
    ("DynamoHandler", "call_action"),
    ("DynamoType", "cast_value"),
    ("Item", "project"),
    ("Item", "size"),
}
"""Every moto attribute the emulator replaces: a new one is a deliberate change."""


def _replaced(as_defined: dict[type, dict[str, Any]]) -> set[tuple[str, str]]:
    now = _moto_as_defined()
    return {
        (cls.__name__, name)
        for cls, attributes in as_defined.items()
        for name in {*attributes, *now[cls]}
        if now[cls].get(name) is not attributes.get(name)
    }


@pytest.fixture
def moto_as_shipped() -> dict[type, dict[str, Any]]:
    """moto's classes with no emulator in the process (an earlier test may have left the
    shared one running)."""
    stop_shared_emulator()
    assert not ATOMIC_DYNAMODB.installed
    assert not MOTO_SPEEDUPS.installed
    return _moto_as_defined()


class _Taken:
    """How often the emulator's paths were taken: its lock, its serializer shortcut."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.lock = 0
        self.wire_form = 0
        lock, wire_form = atomic_dynamodb._backend_lock, moto_speedups.wire_form

        def counted_lock(*args: Any) -> Any:
            self.lock += 1
            return lock(*args)

        def counted_wire_form(value: Any) -> bool:
            self.wire_form += 1
            return wire_form(value)

        monkeypatch.setattr(atomic_dynamodb, "_backend_lock", counted_lock)
        monkeypatch.setattr(moto_speedups, "wire_form", counted_wire_form)

    def take(self) -> tuple[int, int]:
        taken = (self.lock, self.wire_form)
        self.lock = self.wire_form = 0
        return taken


@pytest.fixture
def taken(monkeypatch: pytest.MonkeyPatch) -> _Taken:
    return _Taken(monkeypatch)


def _some_dynamodb_calls(client: Any) -> None:
    client.create_table(
        TableName="patches",
        BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
    )
    client.put_item(TableName="patches", Item={"pk": {"S": "a"}, "v": {"S": "x"}})
    client.query(
        TableName="patches",
        KeyConditionExpression="pk = :a",
        ExpressionAttributeValues={":a": {"S": "a"}},
        ProjectionExpression="v",
    )
    client.delete_table(TableName="patches")


_BOUNDED = Config(retries={"max_attempts": 1}, connect_timeout=10, read_timeout=30)
"""A request the emulator never answers fails the test instead of hanging it."""


def _client(endpoint_url: str | None = None) -> Any:
    return boto3.client(
        "dynamodb", region_name="us-east-1", endpoint_url=endpoint_url, config=_BOUNDED
    )


def _in_process_calls() -> None:
    with mock_aws():
        _some_dynamodb_calls(_client())


def test_an_emulator_patches_moto_while_it_runs_and_its_stop_restores_moto_s_own_classes(
    moto_as_shipped: dict[type, dict[str, Any]], taken: _Taken
) -> None:
    emulator = AwsEmulator()
    endpoint = emulator.start()
    try:
        assert _replaced(moto_as_shipped) == PATCHED
        _some_dynamodb_calls(_client(endpoint))
        lock, wire_form = taken.take()
        assert lock > 0
        assert wire_form > 0
    finally:
        emulator.stop()
    assert _replaced(moto_as_shipped) == set()
    assert _moto_as_defined() == moto_as_shipped


def test_two_emulators_keep_the_patches_until_the_last_one_stops(
    moto_as_shipped: dict[type, dict[str, Any]],
) -> None:
    first, second = AwsEmulator(), AwsEmulator()
    first.start()
    try:
        second.start()
        second.start()  # starting a running emulator counts nothing
        second.stop()
        assert _replaced(moto_as_shipped) == PATCHED
    finally:
        second.stop()
        first.stop()
    assert _moto_as_defined() == moto_as_shipped


def test_an_emulator_that_cannot_start_leaves_moto_as_shipped(
    moto_as_shipped: dict[type, dict[str, Any]],
) -> None:
    with socket.socket() as taken_port:
        taken_port.bind(("127.0.0.1", 0))
        taken_port.listen()
        emulator = AwsEmulator(port=taken_port.getsockname()[1])
        with pytest.raises(OSError, match="cannot listen"):
            emulator.start()
    assert not emulator.running
    assert _moto_as_defined() == moto_as_shipped


def test_while_an_emulator_runs_in_process_moto_is_moto_s_own(
    moto_as_shipped: dict[type, dict[str, Any]], taken: _Taken
) -> None:
    emulator = AwsEmulator()
    endpoint = emulator.start()
    try:
        _in_process_calls()
        assert taken.take() == (0, 0)
        _some_dynamodb_calls(_client(endpoint))
        assert all(count > 0 for count in taken.take())
        _in_process_calls()
        assert taken.take() == (0, 0)
    finally:
        emulator.stop()


@pytest.fixture
def keys() -> DevKeys:
    private_pem, public_pem = generate_key_pair()
    return DevKeys(public_pem, private_pem)


async def test_after_a_stack_stops_moto_in_process_is_moto_s_own_and_the_emulator_stop_restores_it(
    moto_as_shipped: dict[type, dict[str, Any]], taken: _Taken, keys: DevKeys, tmp_path: Path
) -> None:
    config = LocalStackConfig(port=0, keys=keys, state_dir=tmp_path)
    async with LocalStack(config) as stack:
        await asyncio.to_thread(stack.aws_client("dynamodb").list_tables)
        assert _replaced(moto_as_shipped) == PATCHED
    lock, _ = taken.take()
    assert lock > 0  # the stack's own requests were served under the emulator's lock

    # The shared emulator outlives the stack, patched; moto in-process is still moto's own,
    # as the core storage tests see it whatever ran before them.
    assert shared_emulator().running
    _in_process_calls()
    assert taken.take() == (0, 0)

    stop_shared_emulator()
    assert _moto_as_defined() == moto_as_shipped


def test_the_shared_emulator_starts_anew_after_it_was_stopped(
    moto_as_shipped: dict[type, dict[str, Any]],
) -> None:
    emulator = shared_emulator()
    _client(emulator.endpoint_url).list_tables()
    stop_shared_emulator()
    assert not emulator.running
    assert _moto_as_defined() == moto_as_shipped
    stop_shared_emulator()  # stopping a stopped emulator is harmless
    assert shared_emulator() is emulator
    try:
        assert "TableNames" in _client(emulator.endpoint_url).list_tables()
        assert _replaced(moto_as_shipped) == PATCHED
    finally:
        stop_shared_emulator()
