"""Planning (row chunks on line boundaries, file ranges), paths (granted buckets only, checked
before any I/O), manifests, and bodies to tensors."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from modelfleet.batch.jobs import plan_message, task_message
from modelfleet.batch.manifest import ManifestError, parse_manifest
from modelfleet.batch.mapping_rule import columns_to_body, compile_rule
from modelfleet.batch.paths import DataPathPolicy, check_data_path
from modelfleet.batch.planner import (
    CsvChunker,
    InputObject,
    RecordScanner,
    line_starts,
    plan_csv,
    plan_files,
    visibility_timeout,
)
from modelfleet.batch.records import BatchTask, JobRecord, MappingType, TaskKind
from modelfleet.batch.requests import (
    BodyError,
    decode_file,
    inference_routes,
    result_lines,
    tensors_from_columns,
)
from modelfleet.batch.worker import SMALL_TASK_ROWS, is_small_task
from modelfleet.core.url_guard import RefusalCode, UrlRefused
from schemas.tensors import Signature, TensorSpec

POLICY = DataPathPolicy(frozenset({"mine"}))


@given(st.lists(st.text("ab,1", max_size=5), min_size=0, max_size=40), st.integers(1, 7), st.booleans())
def test_csv_chunks_cover_every_line_once_in_order(lines: list[str], chunk: int, final_newline: bool) -> None:
    data = "\n".join(lines).encode() + (b"\n" if final_newline and lines else b"")
    starts = line_starts(data)
    tasks = plan_csv(InputObject("s3://mine/a.csv", "a.csv", len(data)), data, chunk, first_task=3)
    pieces = [data[t.byte_start : t.byte_end] for t in tasks]
    assert b"".join(pieces) == data
    assert [t.row_start for t in tasks] == list(range(0, len(starts), chunk))
    assert sum(t.rows for t in tasks) == len(starts)
    for t, piece in zip(tasks, pieces, strict=True):
        assert piece.count(b"\n") + (0 if piece.endswith(b"\n") or not piece else 1) == t.rows
    assert [t.task_id for t in tasks] == [f"{3 + i:06d}" for i in range(len(tasks))]


def test_files_are_planned_in_sorted_ranges() -> None:
    objs = [InputObject(f"s3://mine/p/{n}", n, 1) for n in ["c", "a", "b", "d", "e"]]
    tasks = plan_files(objs, 2)
    assert [t.relative for t in tasks] == [["a", "b"], ["c", "d"], ["e"]]
    assert all(t.kind == TaskKind.FILES for t in tasks)


def test_visibility_suits_the_chunk_within_bounds() -> None:
    task = BatchTask(task_id="0", kind=TaskKind.CSV_ROWS, rows=10_000)
    assert visibility_timeout(task, 0.002, 3, 3600) == 20
    assert visibility_timeout(task, 0.0001, 3, 3600) == 3
    assert visibility_timeout(task, 10, 3, 3600) == 3600


@pytest.mark.parametrize(
    ("uri", "code"),
    [
        ("s3://theirs/x/", RefusalCode.BUCKET_NOT_ALLOWED),
        ("https://infers-data.obs.xxxxx.com/xgboosterdata/", RefusalCode.SCHEME),
        ("http://mine/x", RefusalCode.SCHEME),
        ("file:///etc/passwd", RefusalCode.SCHEME),
        ("s3://mine/a/../b", RefusalCode.PATH),
        ("s3://mine/a?x=1", RefusalCode.MALFORMED),
        ("s3://user@mine/a", RefusalCode.USERINFO),
    ],
)
def test_paths_outside_the_grants_are_refused(uri: str, code: RefusalCode) -> None:
    with pytest.raises(UrlRefused) as err:
        check_data_path(uri, POLICY)
    assert err.value.code == code


def test_granted_paths_and_an_operator_enabled_local_root() -> None:
    assert check_data_path("s3://mine/in/", POLICY).key == "in/"
    local = DataPathPolicy(frozenset(), "/data")
    assert check_data_path("file:///data/in/", local).key == "/data/in/"
    for bad in ("file:///etc/", "file:///data/../etc/", "file://host/data/x"):
        with pytest.raises(UrlRefused):
            check_data_path(bad, local)


def test_manifest_lines_are_checked_with_their_numbers() -> None:
    good = b'{"source": "s3://mine/a.npy"}\n\n{"source": "s3://mine/b/c.npy", "id": 2}\n'
    entries = parse_manifest(good, POLICY)
    assert [(e.line, e.location.key, e.extra) for e in entries] == [
        (1, "a.npy", {}),
        (3, "b/c.npy", {"id": 2}),
    ]
    cases = {
        b"": "lists no data objects",
        b"[1]\n": "line 1 is not a JSON object",
        b'{"source": "s3://mine/a"}\n{"src": 1}\n': "line 2 has no 'source'",
        b'{"source": "s3://theirs/a"}\n': "line 1: URL",
        b'{"source": "s3://mine/a/"}\n': "not a prefix",
        b'{"source": "s3://mine/a"}\n{"source": "s3://mine/a"}\n': "listed twice",
        b"\xff\n": "not UTF-8",
    }
    for data, reason in cases.items():
        with pytest.raises(ManifestError) as err:
            parse_manifest(data, POLICY)
        assert reason in str(err.value)


def _sig(*inputs: TensorSpec) -> Signature:
    return Signature(inputs=list(inputs), outputs=[TensorSpec(name="y", datatype="FP32", shape=[-1])])


def test_bodies_feed_named_inputs_or_one_tabular_input() -> None:
    seed = compile_rule(
        {
            "type": "object",
            "properties": {
                "data": {
                    "type": "object",
                    "properties": {
                        "req_data": {
                            "type": "array",
                            "items": [
                                {
                                    "type": "object",
                                    "properties": {
                                        "b": {"type": "number", "index": 0},
                                        "a": {"type": "number", "index": 1},
                                    },
                                }
                            ],
                        }
                    },
                }
            },
        }
    )
    cols = {0: np.asarray(["1", "2"], dtype=object), 1: np.asarray(["3", "4"], dtype=object)}
    body, bad = columns_to_body(seed, cols, 2)
    assert not bad
    named = tensors_from_columns(
        body.value,
        2,
        _sig(
            TensorSpec(name="a", datatype="FP32", shape=[-1]),
            TensorSpec(name="b", datatype="INT64", shape=[-1, 1]),
        ),
    )
    assert named["a"].tolist() == [3.0, 4.0] and named["b"].tolist() == [[1], [2]]
    tabular = tensors_from_columns(body.value, 2, _sig(TensorSpec(name="x", datatype="FP32", shape=[-1, 2])))
    assert tabular["x"].tolist() == [[1.0, 3.0], [2.0, 4.0]]  # the rule's order: b then a
    with pytest.raises(BodyError, match="takes shape"):
        tensors_from_columns(body.value, 2, _sig(TensorSpec(name="x", datatype="FP32", shape=[-1, 3])))
    with pytest.raises(BodyError, match="missing: c"):
        tensors_from_columns(
            body.value, 2, _sig(*(TensorSpec(name=n, datatype="FP32", shape=[-1]) for n in "abc"))
        )


def test_files_decode_by_name_and_results_keep_row_order() -> None:
    spec = TensorSpec(name="input", datatype="FP32", shape=[-1, 4])
    assert decode_file("a.json", b"[1, 2, 3, 4]", spec).shape == (1, 4)
    assert decode_file("a.json", b"[[1, 2, 3, 4], [5, 6, 7, 8]]", spec).shape == (2, 4)
    with pytest.raises(BodyError):
        decode_file("a.json", b"[1, 2, 3]", spec)
    with pytest.raises(BodyError):
        decode_file("a.bin", b"\x00", spec)
    lines = result_lines(
        [7, 9], {"p": np.asarray([[0.5, 1.0], [2.0, 3.0]], dtype=np.float32), "k": np.asarray([1, 2])}
    )
    assert lines == b'{"row":7,"outputs":{"p":[0.5,1.0],"k":1}}\n{"row":9,"outputs":{"p":[2.0,3.0],"k":2}}\n'
    assert "/" in inference_routes("m", "1") and "/v2/models/m/versions/1/infer" in inference_routes("m", "1")


def test_only_small_task_messages_are_received_in_batches() -> None:
    now = datetime(2026, 11, 22, tzinfo=UTC)
    job = JobRecord(
        project_id="p",
        job_id="j",
        model_id="m",
        src_path="s3://mine/in/",
        dest_path="s3://mine/out/",
        req_uri="/",
        mapping_type=MappingType.CSV,
        chunk_rows=5000,
        files_per_task=32,
        created_at=now,
        updated_at=now,
    )

    def task(rows: int) -> BatchTask:
        return BatchTask(task_id="000000", kind=TaskKind.CSV_ROWS, keys=["s3://mine/in/a.csv"], rows=rows)

    assert is_small_task(task_message(job, task(1)))
    assert is_small_task(task_message(job, task(SMALL_TASK_ROWS)))
    # a chunk bigger than that is taken alone, so the other workers get their share of the job
    assert not is_small_task(task_message(job, task(SMALL_TASK_ROWS + 1)))
    assert not is_small_task(plan_message(job))
    assert not is_small_task("not json") and not is_small_task('{"type": "task"}')


@given(
    st.lists(
        st.lists(st.text(alphabet='ab,"\n', max_size=6), min_size=1, max_size=3), min_size=1, max_size=20
    ),
    st.integers(1, 5),
)
def test_quoted_newlines_never_split_a_record(rows: list[list[str]], chunk: int) -> None:
    buf = io.StringIO(newline="")
    csv.writer(buf, lineterminator="\n", quoting=csv.QUOTE_MINIMAL).writerows(rows)
    data = buf.getvalue().encode()
    starts = line_starts(data)
    assert len(starts) == len(rows)
    tasks = plan_csv(InputObject("s3://mine/a.csv", "a.csv", len(data)), data, chunk, first_task=0)
    parsed = [
        list(csv.reader(io.StringIO(data[t.byte_start : t.byte_end].decode(), newline=""))) for t in tasks
    ]
    assert [r for piece in parsed for r in piece] == rows
    assert [len(p) for p in parsed] == [t.rows for t in tasks]


@given(
    st.lists(
        st.lists(st.text(alphabet='ab,"\n\r', max_size=6), min_size=1, max_size=3), min_size=0, max_size=25
    ),
    st.integers(1, 6),
    st.lists(st.integers(1, 40), min_size=1, max_size=8),
)
def test_a_csv_planned_piece_by_piece_gets_the_same_tasks(
    rows: list[list[str]], chunk: int, cuts: list[int]
) -> None:
    """However the planner's ranged reads cut the object (inside a quoted field, between \r and
    \n, in the middle of a line), the streamed plan is the plan of the whole object at once."""
    buf = io.StringIO(newline="")
    csv.writer(buf, lineterminator="\n", quoting=csv.QUOTE_MINIMAL).writerows(rows)
    data = buf.getvalue().encode()
    obj = InputObject("s3://mine/a.csv", "a.csv", len(data))
    scanner, chunker = RecordScanner(), CsvChunker(obj, chunk, first_task=2)
    streamed = []
    n = 0
    while scanner.offset < len(data):
        size = cuts[n % len(cuts)]
        n += 1
        streamed += chunker.add(scanner.feed(data[scanner.offset : scanner.offset + size]))
    streamed += chunker.finish()
    assert streamed == plan_csv(obj, data, chunk, first_task=2)
    assert sum(t.rows for t in streamed) == len(rows) == len(line_starts(data))


def test_chunks_are_handed_out_as_soon_as_their_end_is_read() -> None:
    data = b"".join(b"%d,x\n" % i for i in range(10))  # 10 lines of 4 bytes
    obj = InputObject("s3://mine/a.csv", "a.csv", len(data))
    scanner, chunker = RecordScanner(), CsvChunker(obj, 3, first_task=0)
    assert chunker.add(scanner.feed(data[:11])) == []  # the 3rd line's end (the 4th's start) not read yet
    first = chunker.add(scanner.feed(data[11:12]))  # ... now it is
    assert [(t.row_start, t.rows, t.byte_start, t.byte_end) for t in first] == [(0, 3, 0, 12)]
    rest = chunker.add(scanner.feed(data[12:])) + chunker.finish()
    assert [(t.row_start, t.rows) for t in rest] == [(3, 3), (6, 3), (9, 1)]
    assert [t.task_id for t in first + rest] == ["000000", "000001", "000002", "000003"]
