"""Faster paths through moto's DynamoDB code where it only copies, measures or compares values.

The local stack's fan-out reads every subscriber of a topic in one query, and moto spends far
longer on such a query than the service does: time the same tests and benchmarks would
otherwise charge to Streamer. Nearly all of it goes where moto re-derives what it already
holds:

- serialization walks botocore's output model through every `AttributeValue` union, trying
  each member through an alias-resolving picker, although moto's backend already hands the
  serializer values in wire form (`{"S": "..."}`, `{"M": {...}}`);
- a `ProjectionExpression` turns the whole item into plain Python values once per projected
  name and serializes the result back, then checks the projection's size as if it were a new
  write;
- sizing an item for the 1 MB page limit asks each scalar five questions about its type;
- matching and sorting keys asks each value for its ``cast_value``, which answers a string
  with itself, again only after five questions.

Each fast path is taken only where it provably gives moto's own answer, and anything else
takes moto's path: a value skips the model walk only if built from `str`, `bool`, `list` and
`dict` alone, with no binary members (`B`, `BS`, which the walk base64-encodes) and booleans
that are real booleans (the walk coerces strings); a projection only if it names top-level
attributes whose values survive moto's round trip unchanged. Copying items needs nothing
here: moto 5.2's own ``Item.__deepcopy__`` already skips the pickle protocol and the size
check. `tests/infra/test_infra_moto_speedups.py` runs the same DynamoDB calls against moto
with and without these paths and compares the responses byte for byte.

The paths are installed and scoped as `moto_patches` describes: only while an emulator runs,
and only on the threads answering its requests.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any

from streamer_infra.local._moto_patches import MotoPatches, Patch, serving_request

__all__ = [
    "MOTO_SPEEDUPS",
    "install_moto_speedups",
    "plain_projection",
    "scalar_size",
    "uninstall_moto_speedups",
    "wire_form",
]

_ATTRIBUTE_VALUE = "AttributeValue"
_BINARY = frozenset({"B", "BS"})
_BOOLEAN = frozenset({"BOOL", "NULL"})
_CANONICAL_INTEGER = re.compile(r"0|-?[1-9][0-9]*")


def wire_form(value: Any) -> bool:
    """Whether ``value`` is an attribute value the model walk would copy unchanged."""
    if not isinstance(value, dict) or len(value) != 1:
        return False
    ((kind, inner),) = value.items()
    if kind in _BINARY:
        return False
    if kind in _BOOLEAN:
        return isinstance(inner, bool)
    if kind == "M":
        return isinstance(inner, dict) and all(
            isinstance(key, str) and wire_form(item) for key, item in inner.items()
        )
    if kind == "L":
        return isinstance(inner, list) and all(wire_form(item) for item in inner)
    if kind in ("SS", "NS"):
        return isinstance(inner, list) and all(isinstance(item, str) for item in inner)
    if kind in ("S", "N"):
        return isinstance(inner, str)
    return False


def _survives_round_trip(kind: str, value: Any) -> bool:
    if kind == "S":
        return isinstance(value, str)
    if kind == "BOOL":
        return isinstance(value, bool)
    if kind == "NULL":
        return value is True
    if kind == "N":
        return isinstance(value, str) and _CANONICAL_INTEGER.fullmatch(value) is not None
    return False


def plain_projection(
    attributes: dict[str, Any], paths: list[list[str]]
) -> dict[str, dict[str, Any]] | None:
    """The projected attributes in wire form, or None where moto's own projection must run.

    ``attributes`` maps names to moto's `DynamoType`s (anything with ``type`` and ``value``);
    only paths of one top-level name qualify, and only values that moto's round trip
    through plain Python would return unchanged.
    """
    projected: dict[str, dict[str, Any]] = {}
    for path in paths:
        if len(path) != 1 or "[" in path[0]:
            return None
        name = path[0]
        attribute = attributes.get(name)
        if attribute is None or name in projected:
            continue
        kind = getattr(attribute, "type", None)
        value = getattr(attribute, "value", None)
        if not isinstance(kind, str) or not _survives_round_trip(kind, value):
            return None
        projected[name] = {kind: value}
    return projected


def scalar_size(kind: str, value: Any) -> int | None:
    """What moto's ``DynamoType.size`` answers for a scalar, or None for anything else."""
    if kind == "S" and isinstance(value, str):
        return len(value.encode("utf-8"))
    if kind == "N" and isinstance(value, str):
        return len(value)
    if kind in _BOOLEAN and isinstance(value, bool):
        return 1
    return None


def install_moto_speedups() -> bool:
    """Install the fast paths until the matching `uninstall_moto_speedups`.

    False if this moto lacks one of the hooks: that path stays moto's own, the others still
    apply, and only speed depends on it. Match each call with one uninstall.
    """
    return MOTO_SPEEDUPS.install()


def uninstall_moto_speedups() -> None:
    """Release one install; the last one puts moto's own methods back."""
    MOTO_SPEEDUPS.uninstall()


def _patches() -> Sequence[Patch | None]:
    return [*_serializer_patches(), *_item_patches(), *_cast_value_patches()]


def _serializer_patches() -> Sequence[Patch | None]:
    try:
        from moto.core.serialize import BaseJSONSerializer
    except ImportError:
        return [None]
    if not callable(BaseJSONSerializer.__dict__.get("_serialize_type_structure")):
        return [None]

    def replace(original: Callable[..., None]) -> Callable[..., None]:
        def _serialize_type_structure(
            self: Any, serialized: Any, value: Any, shape: Any, key: str
        ) -> None:
            if (
                key
                and getattr(shape, "name", None) == _ATTRIBUTE_VALUE
                and serving_request()
                and wire_form(value)
            ):
                serialized[self.get_serialized_name(shape, key)] = value
                return
            original(self, serialized, value, shape, key)

        return _serialize_type_structure

    return [Patch(BaseJSONSerializer, "_serialize_type_structure", replace)]


def _item_patches() -> Sequence[Patch | None]:
    try:
        from moto.dynamodb.models.dynamo_type import DynamoType, Item, LimitedSizeDict
    except ImportError:
        return [None, None]

    def replace_project(original: Callable[..., Any]) -> Callable[..., Any]:
        def project(self: Any, projection_expressions: list[list[str]]) -> Any:
            # A projection is a subset of an item that passed the 400 KB check when written:
            # it is built without moto's second check, as moto's own deep copy builds items.
            projected = (
                plain_projection(self.attrs, projection_expressions) if serving_request() else None
            )
            if projected is None:
                return original(self, projection_expressions)
            result: Any = Item.__new__(Item)
            result.hash_key = self.hash_key
            result.range_key = self.range_key
            attrs = LimitedSizeDict.__new__(LimitedSizeDict)
            dict.__init__(attrs, {name: DynamoType(self.attrs[name]) for name in projected})
            result.attrs = attrs
            return result

        return project

    def replace_size(original: Callable[[Any], int]) -> Callable[[Any], int]:
        def size(self: Any) -> int:
            if not serving_request():
                return original(self)
            total = 0
            for key, value in self.attrs.items():
                known = scalar_size(value.type, value.value) if type(value) is DynamoType else None
                total += len(key.encode("utf-8")) + (value.size() if known is None else known)
            return total

        return size

    return [
        Patch(Item, "project", replace_project) if callable(Item.__dict__.get("project")) else None,
        Patch(Item, "size", replace_size) if callable(Item.__dict__.get("size")) else None,
    ]


_SELF_CAST_TYPES = frozenset({"S", "B", "BOOL"})
"""Types whose ``cast_value`` in moto is the value itself (the last branch of its chain)."""


def _cast_value_patches() -> Sequence[Patch | None]:
    try:
        from moto.dynamodb.models.dynamo_type import DynamoType
    except ImportError:
        return [None]
    prop = DynamoType.__dict__.get("cast_value")
    if not isinstance(prop, property) or prop.fget is None:
        return [None]

    def replace(original: property) -> property:
        moto_cast = original.fget
        assert moto_cast is not None

        def cast_value(self: Any) -> Any:
            if self.type in _SELF_CAST_TYPES and serving_request():
                return self.value
            return moto_cast(self)

        return property(cast_value)

    return [Patch(DynamoType, "cast_value", replace)]


MOTO_SPEEDUPS = MotoPatches(_patches)
