"""Request bodies as the client sends them: multipart/form-data (with file parts) or
form-urlencoded, with nested fields flattened in brackets (`inputs[0][name]`), and Python's
`True`/`False` for booleans; or JSON."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from email.parser import BytesParser
from email.policy import HTTP
from typing import Any
from urllib.parse import parse_qsl

from modelfleet.control.errors import InvalidRequest

_KEY_PART = re.compile(r"\[([^\]]*)\]")
MAX_INDEX = 1000


@dataclass
class Form:
    fields: list[tuple[str, str]] = field(default_factory=list)
    files: dict[str, bytes] = field(default_factory=dict)


def parse_form(content_type: str, body: bytes) -> Form:
    ctype = content_type.split(";")[0].strip().lower()
    if ctype == "multipart/form-data":
        return _multipart(content_type, body)
    if ctype == "application/x-www-form-urlencoded":
        try:
            text = body.decode()
        except UnicodeDecodeError:
            raise InvalidRequest("the form body is not UTF-8") from None
        return Form(fields=parse_qsl(text, keep_blank_values=True))
    raise InvalidRequest(f"expected a form body (multipart/form-data), got {ctype or 'none'}")


def _multipart(content_type: str, body: bytes) -> Form:
    if "boundary=" not in content_type:
        raise InvalidRequest("multipart/form-data without a boundary")
    message = BytesParser(policy=HTTP).parsebytes(
        b"Content-Type: " + content_type.encode() + b"\r\nMIME-Version: 1.0\r\n\r\n" + body
    )
    if not message.is_multipart():
        raise InvalidRequest("the multipart body could not be parsed")
    form = Form()
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if not isinstance(name, str):
            continue
        payload = part.get_payload(decode=True)
        data = payload if isinstance(payload, bytes) else b""
        if part.get_filename() is not None:
            form.files[name] = data
        else:
            try:
                form.fields.append((name, data.decode()))
            except UnicodeDecodeError:
                raise InvalidRequest(f"form field {name!r} is not UTF-8") from None
    return form


def _scalar(text: str) -> Any:
    return {"True": True, "False": False}.get(text, text)  # Python's spelling only: the client's str(bool)


def unflatten(fields: list[tuple[str, str]]) -> dict[str, Any]:
    """`a[b][0][c]=v` pairs into nested dicts and lists; booleans from their Python spelling."""
    root: dict[str, Any] = {}
    for key, value in fields:
        head = key.split("[", 1)[0]
        parts = [head, *_KEY_PART.findall(key[len(head) :])]
        node: Any = root
        for i, part in enumerate(parts):
            last = i == len(parts) - 1
            if isinstance(node, list):
                if not part.isdigit() or int(part) > MAX_INDEX:
                    raise InvalidRequest(f"form field {key!r} has a bad list index")
                idx = int(part)
                while len(node) <= idx:
                    node.append(None)
                if last:
                    node[idx] = _scalar(value)
                else:
                    if node[idx] is None:
                        node[idx] = [] if parts[i + 1].isdigit() else {}
                    node = node[idx]
            else:
                if last:
                    node[part] = _scalar(value)
                else:
                    if part not in node or not isinstance(node[part], dict | list):
                        node[part] = [] if parts[i + 1].isdigit() else {}
                    node = node[part]
    return root


def json_field(fields: dict[str, Any], name: str, default: Any) -> Any:
    """A form field holding a JSON document (run_pipeline's `json_inputs`, mappings)."""
    raw = fields.get(name)
    if raw in (None, ""):
        return default
    if not isinstance(raw, str):
        return raw
    try:
        return json.loads(raw)
    except json.JSONDecodeError as e:
        raise InvalidRequest(f"form field {name!r} is not valid JSON: {e}") from None
