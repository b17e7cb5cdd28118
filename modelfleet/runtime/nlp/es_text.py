"""Render values inside error messages the way Elasticsearch's Java messages do.

Clients written against Elasticsearch sometimes match on error text, so messages quote values as
Java's ``toString`` would: ``[a, b]`` for lists, ``{k=v}`` for maps, ``true``/``null``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

__all__ = ["java_str"]


def java_str(value: object) -> str:
    """``value`` as ``String.valueOf`` prints the equivalent Java object."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{java_str(k)}={java_str(v)}" for k, v in value.items()) + "}"
    if isinstance(value, Sequence):
        return "[" + ", ".join(java_str(item) for item in value) + "]"
    return str(value)
