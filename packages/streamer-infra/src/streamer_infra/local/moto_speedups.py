"""A faster path through moto's response serializer for DynamoDB attribute values.

moto 5.2 serializes every response by walking botocore's output model. For DynamoDB that
means visiting each `AttributeValue` union of each item and trying all ten of its members
through an alias-resolving attribute picker: about 0.4 ms per returned item, so a fan-out
that queries 1,000 subscribers spends most of a second in the emulator alone, a cost the
real service does not have. moto's DynamoDB backend already hands the serializer values in
wire form (`{"S": "..."}`, `{"M": {...}}`), so for the values where the model walk provably
changes nothing they are copied as they are.

"Provably changes nothing" is kept narrow: a value qualifies only if it is built from
`str`, `bool`, `list` and `dict` alone, with no binary members (`B`, `BS`, which the walk
base64-encodes) and booleans that are real booleans (the walk coerces strings). Anything
else takes moto's own path. The responses are byte-for-byte those of the unpatched
serializer; `tests/infra/test_infra_moto_speedups.py` checks that against moto itself.
"""

from __future__ import annotations

import threading
from typing import Any

__all__ = ["install_moto_speedups", "wire_form"]

_ATTRIBUTE_VALUE = "AttributeValue"
_BINARY = frozenset({"B", "BS"})
_BOOLEAN = frozenset({"BOOL", "NULL"})
_installed = False
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


def install_moto_speedups() -> bool:
    """Patch moto's JSON serializer once per process; False if this moto has no such hook.

    Only speed depends on it: with a moto whose serializer looks different the emulator
    simply stays on moto's own path.
    """
    global _installed
    with _lock:
        if _installed:
            return True
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
        _installed = True
        return True
