"""The fault suite's short form runs with the tests (CI): every row that has landed must finish with
0 lost, 0 duplicated, 0 leaked and 0 5xx; rows whose feature has not landed are listed as pending."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from faults.__main__ import main

pytestmark = pytest.mark.e2e


def test_fault_suite_short_form(tmp_path: Path) -> None:
    output = tmp_path / "faults.json"
    code = main(["--short", "--output", str(output)])
    rows = json.loads(output.read_text())
    assert len(rows) == 12
    ran = [r for r in rows if "pending" not in r]
    assert ran, "no row ran"
    for r in ran:
        assert r["clean"], r
        assert r["sent"] > 0 and r["ok"] == r["sent"], r
    assert code == 0
