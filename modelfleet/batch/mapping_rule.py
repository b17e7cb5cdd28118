"""The seed's ``mapping_rule``: how one CSV row becomes one inference request body.

A rule is a schema-like tree (the shape of the model's request body, as in its ``config.json``):

* ``{"type": "object", "properties": {name: rule, ...}}`` — a JSON object; properties keep their
  order;
* ``{"type": "array", "items": [rule, ...]}`` — a JSON array of exactly those items (``items`` may
  also be one rule, meaning a one-element array);
* ``{"type": "number" | "integer" | "string" | "boolean", "index": i}`` — a leaf: column ``i``
  (from 0) of the row, converted to that type. ``index: -1`` leaves the field out (an array drops
  the item).

Conversions: ``number`` is a float (``"1e3"``, ``"-2.5"``; not empty, not ``nan``/``inf``);
``integer`` an integer (``"3"`` or an integral ``"3.0"``); ``boolean`` one of
``true/false/1/0/yes/no`` in any case; ``string`` the cell as is. A cell that does not convert
makes that row fail with a :class:`RowError` naming the column; other rows are unaffected.

Two evaluations of one compiled rule, which agree (a property test holds them to it):

* :func:`row_to_body` — one row (a sequence of strings) to a body, for the pure reference;
* :func:`columns_to_body` — a whole chunk at once: each leaf becomes a numpy column, and the rows
  that fail are returned with their reasons. Batch workers use this, so a chunk of 10,000 rows is a
  handful of vectorised conversions rather than 10,000 x fields Python calls.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Union

import numpy as np
import numpy.typing as npt

__all__ = [
    "ArrayRule",
    "LeafRule",
    "LeafType",
    "MappingRuleError",
    "ObjectRule",
    "RowError",
    "Rule",
    "columns_to_body",
    "compile_rule",
    "leaves",
    "row_to_body",
]

MAX_DEPTH = 16
MAX_LEAVES = 100_000
MAX_INDEX = 1_000_000


class LeafType(StrEnum):
    NUMBER = "number"
    INTEGER = "integer"
    STRING = "string"
    BOOLEAN = "boolean"


class MappingRuleError(ValueError):
    """The rule itself is malformed (refused when the job is created)."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"mapping_rule{path}: {reason}")
        self.path = path
        self.reason = reason


class RowError(ValueError):
    """One row does not fit the rule; the row goes to the error file with this reason."""


@dataclass(frozen=True)
class LeafRule:
    type: LeafType
    index: int  # -1: omitted


@dataclass(frozen=True)
class ObjectRule:
    properties: tuple[tuple[str, Rule], ...]


@dataclass(frozen=True)
class ArrayRule:
    items: tuple[Rule, ...]


Rule = Union[LeafRule, ObjectRule, ArrayRule]  # noqa: UP007 (a runtime alias used in dataclasses)

_INT64_LIMIT = 2.0**63  # integer leaves become int64 tensors
_TRUE = frozenset({"true", "1", "yes"})
_FALSE = frozenset({"false", "0", "no"})


def compile_rule(raw: Any) -> Rule:
    """Check and compile a rule; MappingRuleError says where and why it is malformed."""
    count = [0]
    rule = _compile(raw, "", 0, count)
    if not any(leaf.index >= 0 for leaf in leaves(rule)):
        raise MappingRuleError("", "no leaf has an index >= 0, so every request body would be empty")
    return rule


def _compile(raw: Any, path: str, depth: int, count: list[int]) -> Rule:
    if depth > MAX_DEPTH:
        raise MappingRuleError(path, f"nested deeper than {MAX_DEPTH} levels")
    if not isinstance(raw, Mapping):
        raise MappingRuleError(path, "must be an object with a 'type'")
    kind = raw.get("type")
    if kind == "object":
        props = raw.get("properties")
        if not isinstance(props, Mapping) or not props:
            raise MappingRuleError(path, "an object needs a non-empty 'properties' object")
        return ObjectRule(
            tuple((str(k), _compile(v, f"{path}.properties.{k}", depth + 1, count)) for k, v in props.items())
        )
    if kind == "array":
        items = raw.get("items")
        if isinstance(items, Mapping):
            items = [items]
        if not isinstance(items, list) or not items:
            raise MappingRuleError(path, "an array needs 'items': a rule or a non-empty list of rules")
        return ArrayRule(
            tuple(_compile(v, f"{path}.items[{i}]", depth + 1, count) for i, v in enumerate(items))
        )
    if kind in tuple(LeafType):
        index = raw.get("index")
        if isinstance(index, bool) or not isinstance(index, int):
            raise MappingRuleError(path, f"a {kind} leaf needs an integer 'index' (-1 to leave it out)")
        if index < -1 or index > MAX_INDEX:
            raise MappingRuleError(path, f"index {index} is out of range (-1 .. {MAX_INDEX})")
        count[0] += 1
        if count[0] > MAX_LEAVES:
            raise MappingRuleError(path, f"more than {MAX_LEAVES} leaves")
        return LeafRule(LeafType(kind), index)
    allowed = "object, array, number, integer, string, boolean"
    raise MappingRuleError(path, f"'type' must be one of {allowed}, got {kind!r}")


def leaves(rule: Rule) -> list[LeafRule]:
    """Every leaf, in document order (omitted ones too)."""
    if isinstance(rule, LeafRule):
        return [rule]
    children = [r for _, r in rule.properties] if isinstance(rule, ObjectRule) else list(rule.items)
    return [leaf for child in children for leaf in leaves(child)]


def _omitted(rule: Rule) -> bool:
    return isinstance(rule, LeafRule) and rule.index < 0


# --- one row --------------------------------------------------------------------------------------
def convert_cell(kind: LeafType, cell: str, column: int) -> Any:
    """One cell to its JSON value; RowError names the column and the problem."""
    if kind is LeafType.STRING:
        return cell
    text = cell.strip()
    if kind is LeafType.BOOLEAN:
        low = text.lower()
        if low in _TRUE:
            return True
        if low in _FALSE:
            return False
        raise RowError(f"column {column}: {cell!r} is not a boolean")
    try:
        value = float(text)
    except ValueError:
        raise RowError(f"column {column}: {cell!r} is not a {kind.value}") from None
    if not math.isfinite(value):
        raise RowError(f"column {column}: {cell!r} is not a finite {kind.value}")
    if kind is LeafType.INTEGER:
        if not value.is_integer():
            raise RowError(f"column {column}: {cell!r} is not an integer")
        if not -_INT64_LIMIT <= value < _INT64_LIMIT:
            raise RowError(f"column {column}: {cell!r} is out of the 64-bit integer range")
        return int(value)
    return value


def row_to_body(rule: Rule, row: Sequence[str]) -> Any:
    """The request body of one row (its cells as strings). RowError if a cell does not convert."""
    if isinstance(rule, LeafRule):
        if rule.index >= len(row):
            raise RowError(f"column {rule.index}: the row has only {len(row)} columns")
        return convert_cell(rule.type, row[rule.index], rule.index)
    if isinstance(rule, ObjectRule):
        return {name: row_to_body(child, row) for name, child in rule.properties if not _omitted(child)}
    return [row_to_body(child, row) for child in rule.items if not _omitted(child)]


# --- a chunk of rows at once ------------------------------------------------------------------------
Column = npt.NDArray[Any]


@dataclass
class ColumnarBody:
    """A rule evaluated over n rows: the body's shape, with a numpy column of n values per leaf."""

    value: Any  # dict / list / Column, mirroring the rule (omitted fields left out)
    rows: int


def _convert_column(kind: LeafType, cells: Column, column: int, bad: dict[int, str]) -> Column:
    """Vectorised convert_cell over one column; failing rows are added to `bad` (first reason wins)."""
    if kind is LeafType.STRING:
        return cells.astype(str) if cells.dtype.kind != "U" else cells
    if kind is LeafType.BOOLEAN:
        low = np.char.lower(np.char.strip(cells.astype(str)))
        truth = np.isin(low, list(_TRUE))
        valid = truth | np.isin(low, list(_FALSE))
        for i in np.flatnonzero(~valid):
            bad.setdefault(int(i), f"column {column}: {str(cells[i])!r} is not a boolean")
        return truth
    numeric = cells.dtype.kind in "fiu"
    values = cells.astype(np.float64, copy=False) if numeric else _parse_floats(cells)
    finite = np.isfinite(values)
    if kind is LeafType.INTEGER:
        safe = np.where(finite, values, 0.0)
        whole = finite & (np.floor(safe) == safe)
        integral = whole & (safe >= -_INT64_LIMIT) & (safe < _INT64_LIMIT)
        for i in np.flatnonzero(~integral):
            problem = "is out of the 64-bit integer range" if whole[i] else "is not an integer"
            bad.setdefault(int(i), f"column {column}: {str(cells[i])!r} {problem}")
        return np.where(integral, values, 0.0).astype(np.int64)
    for i in np.flatnonzero(~finite):
        bad.setdefault(int(i), f"column {column}: {str(cells[i])!r} is not a finite number")
    return values


def _parse_floats(cells: Column) -> npt.NDArray[np.float64]:
    """Strings to floats, NaN where a cell is not a number (pandas' C parser when available)."""
    try:
        import pandas as pd

        parsed = pd.to_numeric(pd.Series(cells, dtype=object).str.strip(), errors="coerce")
        return np.asarray(parsed, dtype=np.float64)
    except ImportError:  # pragma: no cover - pandas is a dependency of the batch worker
        out = np.empty(len(cells), dtype=np.float64)
        for i, cell in enumerate(cells):
            try:
                out[i] = float(str(cell).strip())
            except ValueError:
                out[i] = np.nan
        return out


def columns_to_body(
    rule: Rule, columns: Mapping[int, Column], rows: int
) -> tuple[ColumnarBody, dict[int, str]]:
    """Evaluate `rule` over `rows` rows given as columns (index -> values). Returns the columnar
    body and {row: reason} of the rows that fail (missing columns fail every row)."""
    bad: dict[int, str] = {}
    cache: dict[tuple[LeafType, int], Column] = {}

    def build(node: Rule) -> Any:
        if isinstance(node, LeafRule):
            key = (node.type, node.index)
            if key not in cache:
                cells = columns.get(node.index)
                if cells is None:
                    for i in range(rows):
                        bad.setdefault(i, f"column {node.index}: the row has too few columns")
                    cache[key] = np.zeros(rows, dtype=np.float64)
                else:
                    cache[key] = _convert_column(node.type, np.asarray(cells), node.index, bad)
            return cache[key]
        if isinstance(node, ObjectRule):
            return {name: build(child) for name, child in node.properties if not _omitted(child)}
        return [build(child) for child in node.items if not _omitted(child)]

    return ColumnarBody(build(rule), rows), bad


def body_of_row(body: ColumnarBody, row: int) -> Any:
    """Row `row` of a columnar body as a plain JSON body (for tests and per-row fallbacks)."""

    def pick(node: Any) -> Any:
        if isinstance(node, dict):
            return {k: pick(v) for k, v in node.items()}
        if isinstance(node, list):
            return [pick(v) for v in node]
        value = node[row]
        return value.item() if hasattr(value, "item") else value

    return pick(body.value)
