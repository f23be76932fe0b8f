"""Faster paths through moto's DynamoDB code where it only copies, measures or compares values.

moto 5.2 serializes every response by walking botocore's output model. For DynamoDB that
means visiting each `AttributeValue` union of each item and trying all ten of its members
through an alias-resolving attribute picker: about 0.4 ms per returned item, so a fan-out
that queries 1,000 subscribers spends most of a second in the emulator alone, a cost the
real service does not have. moto's DynamoDB backend already hands the serializer values in
wire form (`{"S": "..."}`, `{"M": {...}}`), so for the values where the model walk provably
changes nothing they are copied as they are.

Projections (`ProjectionExpression`) get the same treatment. moto projects an item by
turning the whole item into plain Python values once per projected name and serializing the
result back, about half of a subscriber query's time in the emulator; a projection of
top-level names whose values that round trip leaves as they are (strings, booleans, nulls,
integers in canonical form) now copies those values instead. A query also deep-copies and
sizes every item it reads; strings, numbers, booleans and nulls are copied and sized
directly, with the answers moto's own code gives. And it compares the key of every item in
the table with the condition's, then sorts the matches, each comparison asking a value for
its ``cast_value``, which answers a string with itself only after five questions about its
type; strings, binaries and booleans now answer at once (a 1,000-item index query in-process:
42.5 ms to 38 ms, the minimum of 30).

"Provably changes nothing" is kept narrow: a value qualifies only if it is built from
`str`, `bool`, `list` and `dict` alone, with no binary members (`B`, `BS`, which the walk
base64-encodes) and booleans that are real booleans (the walk coerces strings). Anything
else takes moto's own path. The responses are byte-for-byte those of the unpatched
serializer; `tests/infra/test_infra_moto_speedups.py` checks that against moto itself.
"""

from __future__ import annotations

import copy
import re
import threading
from typing import Any

__all__ = ["install_moto_speedups", "plain_projection", "wire_form"]

_ATTRIBUTE_VALUE = "AttributeValue"
_BINARY = frozenset({"B", "BS"})
_BOOLEAN = frozenset({"BOOL", "NULL"})
_CANONICAL_INTEGER = re.compile(r"0|-?[1-9][0-9]*")
_installed: bool | None = None
"""None until the patches were tried; then whether all of them took."""
_lock = threading.Lock()


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


_SCALAR_TYPES = frozenset({"S", "N", "BOOL", "NULL"})


def install_moto_speedups() -> bool:
    """Patch moto once per process; False if this moto lacks one of the patched hooks.

    Only speed depends on it: where moto looks different, that path simply stays moto's own,
    and each patch is applied on its own.
    """
    global _installed
    with _lock:
        if _installed is None:
            serializer = _install_serializer()
            items = _install_item_paths()
            casts = _install_cast_value()
            _installed = serializer and items and casts
        return _installed


def _install_serializer() -> bool:
    try:
        from moto.core.serialize import BaseJSONSerializer
    except ImportError:
        return False
    original = getattr(BaseJSONSerializer, "_serialize_type_structure", None)
    if original is None:
        return False

    def _serialize_type_structure(
        self: Any, serialized: Any, value: Any, shape: Any, key: str
    ) -> None:
        if key and getattr(shape, "name", None) == _ATTRIBUTE_VALUE and wire_form(value):
            serialized[self.get_serialized_name(shape, key)] = value
            return
        original(self, serialized, value, shape, key)

    BaseJSONSerializer._serialize_type_structure = _serialize_type_structure  # type: ignore[method-assign]
    return True


def scalar_size(kind: str, value: Any) -> int | None:
    """What moto's ``DynamoType.size`` answers for a scalar, or None for anything else."""
    if kind == "S" and isinstance(value, str):
        return len(value.encode("utf-8"))
    if kind == "N" and isinstance(value, str):
        return len(value)
    if kind in _BOOLEAN and isinstance(value, bool):
        return 1
    return None


def _install_item_paths() -> bool:
    """Project, copy and size items without moto's per-value machinery where values are scalars.

    Every query deep-copies each matching item, sizes it (its 1 MB page limit) and projects
    it. For a str or bool value moto's ``DynamoType.__deepcopy__`` ends in ``result.value =
    self.value`` anyway, and a subset of an item that passed the 400 KB check on write needs
    no second check, so such copies are built directly; lists, maps, sets and binary values
    still go through ``copy.deepcopy`` and moto's own ``size``.
    """
    try:
        from moto.dynamodb.models.dynamo_type import DynamoType, Item, LimitedSizeDict
    except ImportError:
        return False
    original_project = getattr(Item, "project", None)
    if original_project is None or not hasattr(Item, "size"):
        return False

    def build(self: Any, attrs: dict[str, Any], copy_key: Any) -> Any:
        """An Item as moto's own ``Item.__deepcopy__`` builds one, skipping the size check."""
        result: Any = Item.__new__(Item)
        result.hash_key = copy_key(self.hash_key)
        result.range_key = copy_key(self.range_key)
        checked = LimitedSizeDict.__new__(LimitedSizeDict)
        dict.__init__(checked)
        dict.update(checked, attrs)
        result.attrs = checked
        return result

    def copy_value(value: Any, memo: dict[int, Any]) -> Any:
        if type(value) is DynamoType and value.type in _SCALAR_TYPES:
            return DynamoType(value)
        return copy.deepcopy(value, memo)

    def project(self: Any, projection_expressions: list[list[str]]) -> Any:
        projected = plain_projection(self.attrs, projection_expressions)
        if projected is None:
            return original_project(self, projection_expressions)
        attrs = {name: DynamoType(self.attrs[name]) for name in projected}
        return build(self, attrs, lambda key: key)

    def __deepcopy__(self: Any, memo: dict[int, Any]) -> Any:
        attrs = {key: copy_value(value, memo) for key, value in self.attrs.items()}
        result = build(self, attrs, lambda key: copy_value(key, memo))
        memo[id(self)] = result
        return result

    def size(self: Any) -> int:
        total = 0
        for key, value in self.attrs.items():
            known = scalar_size(value.type, value.value) if type(value) is DynamoType else None
            total += len(key.encode("utf-8")) + (value.size() if known is None else known)
        return total

    Item.project = project  # type: ignore[method-assign]
    Item.__deepcopy__ = __deepcopy__  # type: ignore[method-assign]
    Item.size = size  # type: ignore[method-assign]
    return True


_SELF_CAST_TYPES = frozenset({"S", "B", "BOOL"})
"""Types whose ``cast_value`` in moto is the value itself (the last branch of its chain)."""


def _install_cast_value() -> bool:
    try:
        from moto.dynamodb.models.dynamo_type import DynamoType
    except ImportError:
        return False
    prop = DynamoType.__dict__.get("cast_value")
    original = getattr(prop, "fget", None)
    if not isinstance(prop, property) or original is None:
        return False

    def cast_value(self: Any) -> Any:
        if self.type in _SELF_CAST_TYPES:
            return self.value
        return original(self)

    DynamoType.cast_value = property(cast_value)  # type: ignore[assignment,method-assign]
    return True
