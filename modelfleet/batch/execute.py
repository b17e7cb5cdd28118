"""Running one task's inputs through a model, batched (no AWS here: bytes in, result bytes out).

A CSV chunk is parsed at once (pandas' C parser; Python's csv module for a chunk pandas cannot
parse, so one malformed line fails only itself), mapped column-wise by the mapping rule, and run
through the model in slices of ``MAX_BATCH`` rows. Rows that do not convert, and rows of a slice
the model refuses (re-run one by one to find them), go to the error lines with their reason; the
rest go to the result lines in input order. A chunk that is not UTF-8 text raises
:class:`TaskError`: the whole task fails, is retried, and ends in the DLQ (a poison input).
"""

from __future__ import annotations

import csv
import io
import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
import orjson

from modelfleet.batch.mapping_rule import LeafType, Rule, columns_to_body, leaves
from modelfleet.batch.planner import line_starts
from modelfleet.batch.requests import BodyError, decode_file, file_result, result_lines, tensors_from_columns
from modelfleet.runtime.backends import LoadedModel

__all__ = ["MAX_BATCH", "ChunkResult", "FileOutcome", "TaskError", "run_csv_chunk", "run_files"]

MAX_BATCH = 8192
Array = npt.NDArray[Any]


class TaskError(Exception):
    """The task as a whole cannot run (retried; after max receives: dead, in the DLQ)."""


@dataclass
class ChunkResult:
    results: bytes  # JSON lines, one per good row, in row order
    errors: bytes  # JSON lines {"row", "error"} for rows that failed
    rows_ok: int
    rows_failed: int


def _parse_fast(data: bytes, needed: Sequence[int], text_columns: set[int]) -> dict[int, Array] | None:
    try:
        import pandas as pd

        frame = pd.read_csv(
            io.BytesIO(data),
            header=None,
            usecols=list(needed),
            dtype={i: str for i in text_columns},
            na_filter=False,
            skip_blank_lines=False,
            encoding="utf-8",
            engine="c",
        )
    except (ImportError, ValueError, IndexError):  # ParserError is a ValueError; too few columns
        return None
    except UnicodeDecodeError:
        raise
    return {int(c): frame[c].to_numpy() for c in frame.columns}


def _parse_slow(data: bytes, needed: Sequence[int], rows: int) -> tuple[dict[int, Array], dict[int, str]]:
    """Record by record (split as the planner split them: quoted newlines stay inside), so one
    malformed record fails only itself."""
    starts = [int(s) for s in line_starts(data)] + [len(data)]
    lines = [data[a:b].decode("utf-8").rstrip("\n") for a, b in itertools.pairwise(starts)]
    bad: dict[int, str] = {}
    columns: dict[int, list[str]] = {i: [] for i in needed}
    for n, line in enumerate(lines[:rows]):
        try:
            cells = next(csv.reader([line.rstrip("\r")]), [])
        except csv.Error as e:
            cells = []
            bad[n] = f"not a CSV line: {e}"
        for i in needed:
            if i < len(cells):
                columns[i].append(cells[i])
            else:
                columns[i].append("")
                bad.setdefault(n, f"column {i}: the row has only {len(cells)} columns")
    return {i: np.asarray(v, dtype=object) for i, v in columns.items()}, bad


def run_csv_chunk(data: bytes, rule: Rule, model: LoadedModel, row_start: int, rows: int) -> ChunkResult:
    try:
        data.decode("utf-8")  # a chunk that is not UTF-8 text fails as a whole (a poison input)
    except UnicodeDecodeError as e:
        raise TaskError(f"rows {row_start}..{row_start + rows - 1} are not UTF-8 text ({e.reason})") from None
    all_leaves = [leaf for leaf in leaves(rule) if leaf.index >= 0]
    needed = sorted({leaf.index for leaf in all_leaves})
    text_columns = {leaf.index for leaf in all_leaves if leaf.type in (LeafType.STRING, LeafType.BOOLEAN)}
    columns = _parse_fast(data, needed, text_columns)
    bad: dict[int, str] = {}
    if columns is None or any(len(c) != rows for c in columns.values()):
        columns, bad = _parse_slow(data, needed, rows)
        if any(len(c) != rows for c in columns.values()):
            raise TaskError(f"the chunk at row {row_start} has fewer lines than planned ({rows})")
    body, conversion_errors = columns_to_body(rule, columns, rows)
    for row, reason in conversion_errors.items():
        bad.setdefault(row, reason)
    try:
        tensors = tensors_from_columns(body.value, rows, model.signature)
    except BodyError as e:
        raise TaskError(str(e)) from None
    good = _without(np.arange(rows, dtype=np.int64), bad)  # the rows that go to the model, in order
    if len(good) < rows:
        tensors = {k: v[good] for k, v in tensors.items()}
    outputs, failed = _run_batched(model, tensors, len(good))
    for local, reason in failed.items():
        bad[int(good[local])] = reason
    if failed:  # the outputs are those of the rows that ran
        good = good[_without(np.arange(len(good), dtype=np.int64), failed)]
    numbers = (good + row_start).tolist()
    errors = b"".join(
        orjson.dumps({"row": row_start + row, "error": reason}, option=orjson.OPT_APPEND_NEWLINE)
        for row, reason in sorted(bad.items())
    )
    return ChunkResult(result_lines(numbers, outputs), errors, len(numbers), len(bad))


def _without(indices: Array, dropped: Mapping[int, Any]) -> Array:
    if not dropped:
        return indices
    result: Array = np.setdiff1d(indices, np.fromiter(dropped, dtype=np.int64, count=len(dropped)))
    return result


def _run_batched(
    model: LoadedModel, tensors: Mapping[str, Array], rows: int
) -> tuple[dict[str, Array], dict[int, str]]:
    """All rows through the model in slices; a slice that fails re-runs row by row. The outputs
    are those of the rows that ran, in order; the others are in the failures."""
    parts: list[dict[str, Array]] = []
    failed: dict[int, str] = {}
    for start in range(0, rows, MAX_BATCH):
        piece = {k: v[start : start + MAX_BATCH] for k, v in tensors.items()}
        try:
            parts.append(model.run(piece))
            continue
        except Exception:
            pass
        for i in range(len(next(iter(piece.values())))):
            try:
                parts.append(model.run({k: v[i : i + 1] for k, v in piece.items()}))
            except Exception as e:
                failed[start + i] = f"inference failed: {e}"
    if not parts:
        return {o.name: np.empty((0,)) for o in model.signature.outputs}, failed
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}, failed


@dataclass
class FileOutcome:
    results: dict[str, bytes] = field(default_factory=dict)  # relative name -> result document
    errors: dict[str, str] = field(default_factory=dict)  # relative name -> reason


def run_files(files: Sequence[tuple[str, str, bytes]], model: LoadedModel) -> FileOutcome:
    """(source uri, relative name, bytes) of each file -> one result document per file. Files of
    one shape run as one batch."""
    spec = model.signature.inputs[0]
    out = FileOutcome()
    groups: dict[tuple[Any, ...], list[tuple[str, str, Array]]] = {}
    for source, relative, data in files:
        try:
            array = decode_file(relative, data, spec)
        except BodyError as e:
            out.errors[relative] = str(e)
            continue
        groups.setdefault((array.shape[1:], array.dtype.str), []).append((source, relative, array))
    for members in groups.values():
        batch = np.concatenate([a for _, _, a in members])
        try:
            result = model.run({spec.name: batch})
        except Exception:
            for source, relative, array in members:
                try:
                    out.results[relative] = file_result(source, model.run({spec.name: array}))
                except Exception as e:
                    out.errors[relative] = f"inference failed: {e}"
            continue
        offset = 0
        for source, relative, array in members:
            n = len(array)
            out.results[relative] = file_result(
                source, {k: v[offset : offset + n] for k, v in result.items()}
            )
            offset += n
    return out
