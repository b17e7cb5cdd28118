"""Request bodies exactly as `craft-ai-sdk` encodes them (multipart with bracket keys)."""

from __future__ import annotations

import io

import pytest
import requests
from craft_ai_sdk import Input, Output
from craft_ai_sdk.utils import multipartify
from hypothesis import given
from hypothesis import strategies as st

from modelfleet.control.errors import InvalidRequest
from modelfleet.faces.pipelines.forms import parse_form, unflatten


def encoded(data: dict[str, object], files: dict[str, object]) -> tuple[str, bytes]:
    req = requests.Request("POST", "http://x/", data=multipartify(data), files=files).prepare()
    assert isinstance(req.body, bytes)
    return req.headers["Content-Type"], req.body


def test_a_create_pipeline_body_round_trips() -> None:
    data = {
        "pipeline_name": "p",
        "function_path": "src/main.py",
        "function_name": "f",
        "container_config": {"requirements_path": "requirements.txt"},
        "inputs": [Input("x", "number", is_required=True).to_dict(), Input("y", "string").to_dict()],
        "outputs": [Output("z", "json").to_dict()],
    }
    archive = b"\x1f\x8b" + bytes(range(256)) * 4
    ctype, body = encoded(data, {"step_file": io.BytesIO(archive), **multipartify(data)})
    form = parse_form(ctype, body)
    assert form.files["step_file"] == archive
    fields = unflatten(form.fields)
    assert fields["pipeline_name"] == "p"
    assert fields["container_config"] == {"requirements_path": "requirements.txt"}
    assert fields["inputs"][0]["name"] == "x" and fields["inputs"][0]["is_required"] is True
    assert fields["inputs"][1]["name"] == "y"
    assert fields["outputs"][0] == {"name": "z", "data_type": "json"}


@given(
    st.dictionaries(
        st.from_regex(r"[a-z]{1,8}", fullmatch=True),
        st.lists(st.text(st.characters(codec="utf-8", exclude_characters="\r"), max_size=10), max_size=4),
        max_size=4,
    )
)
def test_nested_lists_unflatten_to_what_was_sent(data: dict[str, list[str]]) -> None:
    pairs = [(k, v[1]) for k, v in multipartify(data).items()]
    back = unflatten(pairs)
    for key, values in data.items():
        if values:
            assert back[key] == [{"True": True, "False": False}.get(v, v) for v in values]


def test_bad_forms_are_400s() -> None:
    with pytest.raises(InvalidRequest, match="expected a form"):
        parse_form("application/json", b"{}")
    with pytest.raises(InvalidRequest, match="boundary"):
        parse_form("multipart/form-data", b"--x\r\n")
    with pytest.raises(InvalidRequest, match="bad list index"):
        unflatten([("a[0]", "1"), ("a[x]", "2")])
    with pytest.raises(InvalidRequest, match="bad list index"):
        unflatten([("a[99999]", "1")])
