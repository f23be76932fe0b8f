"""The TypeScript client's copy of the protocol schema must be what the models export now.

The TypeScript package checks its frame types against the committed schema (its own test);
this side fails when the models changed and the committed schema was not regenerated, so a
change to `streamer_core.protocol` cannot leave the JavaScript client silently behind.
"""

from __future__ import annotations

import json
import typing
from pathlib import Path

from streamer_core import ClientFrame, ServerFrame
from streamer_core.json_schema import main, protocol_schema, render

COMMITTED = (
    Path(__file__).resolve().parents[2]
    / "packages"
    / "streamer-client-js"
    / "schema"
    / "protocol.schema.json"
)
REGENERATE = (
    "python -m streamer_core.json_schema packages/streamer-client-js/schema/protocol.schema.json"
)


def test_committed_schema_is_what_the_models_export() -> None:
    committed = COMMITTED.read_text(encoding="utf-8")
    assert json.loads(committed) == protocol_schema(), (
        f"{COMMITTED.name} is out of date with streamer_core.protocol; run: {REGENERATE}"
    )
    # Byte for byte too, so a hand edit that happens to parse the same is caught as well.
    assert committed == render(), f"{COMMITTED.name} was edited by hand; run: {REGENERATE}"


def test_every_server_frame_type_is_in_the_schema() -> None:
    members = typing.get_args(typing.get_args(ServerFrame)[0])
    types = {member.model_fields["type"].default for member in members}
    schema = protocol_schema()
    mapping = schema["$defs"]["ServerFrame"]["discriminator"]["mapping"]
    assert set(mapping) == types
    for type_name, ref in mapping.items():
        definition = schema["$defs"][ref.removeprefix("#/$defs/")]
        assert definition["properties"]["type"]["const"] == type_name
        assert definition["additionalProperties"] is False


def test_client_frame_fields_are_in_the_schema() -> None:
    definition = protocol_schema()["$defs"]["ClientFrame"]
    assert set(definition["properties"]) == set(ClientFrame.model_fields)
    assert definition["required"] == ["action"]


def test_the_module_writes_the_schema_to_a_file(tmp_path: Path) -> None:
    target = tmp_path / "nested" / "protocol.schema.json"
    assert main([str(target)]) == 0
    assert target.read_text(encoding="utf-8") == render()
