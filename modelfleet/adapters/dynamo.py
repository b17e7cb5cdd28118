"""DynamoDB adapter: the platform's state store.

Every item is its key attributes, the attributes indexes and conditions need, a version number
`v` for optimistic locking, and the record itself as JSON in `doc`. Writes that belong together
(a state change and its event) go in one TransactWriteItems.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from botocore.exceptions import BotoCoreError, ClientError
from pydantic import BaseModel

from modelfleet.adapters.errors import BackendUnavailable, ConditionFailed
from modelfleet.resources import Names, table_spec

M = TypeVar("M", bound=BaseModel)

ABSENT = -1  # expect_version value meaning "the item must not exist yet"


@dataclass
class Write:
    """One write of a transaction (or a single conditional write)."""

    table: str  # logical name
    key: dict[str, str]
    doc: BaseModel | None = None  # None with delete=False: attribute-only update (see `remove`)
    version: int = 0
    expect_version: int | None = None  # None: unconditional; ABSENT: must not exist; n: must be at n
    attrs: dict[str, str | int] = field(default_factory=dict)
    remove: tuple[str, ...] = ()
    delete: bool = False
    add: dict[str, int] = field(default_factory=dict)  # atomic counters (ADD), attribute-only updates


def _attr(value: str | int) -> dict[str, str]:
    return {"N": str(value)} if isinstance(value, int) else {"S": value}


class DynamoStore:
    def __init__(self, client: Any, names: Names) -> None:
        self._c = client
        self._names = names

    # --- low level -------------------------------------------------------------------------
    def _table(self, logical: str) -> str:
        return self._names.table(logical)

    def _call(self, op: str, **kwargs: Any) -> Any:
        try:
            return getattr(self._c, op)(**kwargs)
        except ClientError as e:
            code = e.response.get("Error", {}).get("Code", "")
            if code in ("ConditionalCheckFailedException", "TransactionCanceledException"):
                raise ConditionFailed(str(e)) from e
            raise BackendUnavailable(f"DynamoDB {op} failed: {code or e}") from e
        except BotoCoreError as e:
            raise BackendUnavailable(f"DynamoDB {op} failed: {e}") from e

    def _write_request(self, w: Write) -> tuple[str, dict[str, Any]]:
        table = self._table(w.table)
        key = {k: _attr(v) for k, v in w.key.items()}
        names: dict[str, str] = {}
        values: dict[str, Any] = {}
        condition = None
        hash_key = table_spec(w.table).hash_key
        if w.expect_version == ABSENT:
            names["#hk"] = hash_key
            condition = "attribute_not_exists(#hk)"
        elif w.expect_version is not None:
            names["#v"] = "v"
            values[":expected"] = {"N": str(w.expect_version)}
            condition = "#v = :expected"
        if w.delete:
            req: dict[str, Any] = {"TableName": table, "Key": key}
            kind = "Delete"
        elif w.doc is not None and not w.remove and not w.add:
            item = dict(key)
            item.update({k: _attr(v) for k, v in w.attrs.items()})
            item["v"] = {"N": str(w.version)}
            item["doc"] = {"S": w.doc.model_dump_json()}
            req = {"TableName": table, "Item": item}
            kind = "Put"
        else:
            sets = []
            for i, (k, v) in enumerate(w.attrs.items()):
                names[f"#a{i}"] = k
                values[f":a{i}"] = _attr(v)
                sets.append(f"#a{i} = :a{i}")
            expr = ""
            if sets:
                expr += "SET " + ", ".join(sets)
            if w.add:
                for n, (k, amount) in enumerate(w.add.items()):
                    names[f"#c{n}"] = k
                    values[f":c{n}"] = {"N": str(amount)}
                expr += (" " if expr else "") + "ADD " + ", ".join(f"#c{n} :c{n}" for n in range(len(w.add)))
            if w.remove:
                for j, k in enumerate(w.remove):
                    names[f"#r{j}"] = k
                expr += (" " if expr else "") + "REMOVE " + ", ".join(f"#r{j}" for j in range(len(w.remove)))
            req = {"TableName": table, "Key": key, "UpdateExpression": expr}
            kind = "Update"
        if condition:
            req["ConditionExpression"] = condition
        if names:
            req["ExpressionAttributeNames"] = names
        if values:
            req["ExpressionAttributeValues"] = values
        return kind, req

    def write(self, w: Write) -> None:
        kind, req = self._write_request(w)
        self._call({"Put": "put_item", "Update": "update_item", "Delete": "delete_item"}[kind], **req)

    def transact(self, writes: Sequence[Write]) -> None:
        """All or nothing. Raises ConditionFailed when any condition fails."""
        if not writes:
            return
        if len(writes) == 1:
            self.write(writes[0])
            return
        for start in range(0, len(writes), 100):
            chunk = writes[start : start + 100]
            items = []
            for w in chunk:
                kind, req = self._write_request(w)
                items.append({kind: req})
            self._call("transact_write_items", TransactItems=items)

    def get(self, logical: str, key: dict[str, str], model: type[M]) -> tuple[M, int] | None:
        out = self._call(
            "get_item",
            TableName=self._table(logical),
            Key={k: _attr(v) for k, v in key.items()},
            ConsistentRead=True,
        )
        item = out.get("Item")
        if not item or "doc" not in item:
            return None
        return model.model_validate_json(item["doc"]["S"]), int(item.get("v", {"N": "0"})["N"])

    def get_numbers(self, logical: str, key: dict[str, str], names: tuple[str, ...]) -> dict[str, int]:
        """The numeric attributes `names` of an item (counters kept beside its doc); 0 when absent."""
        out = self._call(
            "get_item",
            TableName=self._table(logical),
            Key={k: _attr(v) for k, v in key.items()},
            ConsistentRead=True,
        )
        item = out.get("Item") or {}
        return {n: int(item[n]["N"]) if n in item and "N" in item[n] else 0 for n in names}

    def query(
        self,
        logical: str,
        key_name: str,
        value: str,
        model: type[M],
        index: str | None = None,
        limit: int | None = None,
        newest_first: bool = False,
    ) -> list[M]:
        return [
            model.model_validate_json(i["doc"]["S"])
            for i in self._query_items(logical, key_name, value, index, limit, newest_first)
            if "doc" in i
        ]

    def _query_items(
        self,
        logical: str,
        key_name: str,
        value: str,
        index: str | None,
        limit: int | None,
        newest_first: bool,
    ) -> Iterator[dict[str, Any]]:
        kwargs: dict[str, Any] = {
            "TableName": self._table(logical),
            "KeyConditionExpression": "#k = :v",
            "ExpressionAttributeNames": {"#k": key_name},
            "ExpressionAttributeValues": {":v": {"S": value}},
            "ScanIndexForward": not newest_first,
        }
        if index:
            kwargs["IndexName"] = index
        count = 0
        while True:
            out = self._call("query", **kwargs)
            for item in out.get("Items", []):
                yield item
                count += 1
                if limit is not None and count >= limit:
                    return
            last = out.get("LastEvaluatedKey")
            if not last:
                return
            kwargs["ExclusiveStartKey"] = last

    def scan_items(self, logical: str) -> Iterator[dict[str, Any]]:
        kwargs: dict[str, Any] = {"TableName": self._table(logical), "ConsistentRead": True}
        while True:
            out = self._call("scan", **kwargs)
            yield from out.get("Items", [])
            last = out.get("LastEvaluatedKey")
            if not last:
                return
            kwargs["ExclusiveStartKey"] = last

    def scan(self, logical: str, model: type[M]) -> list[M]:
        return [model.model_validate_json(i["doc"]["S"]) for i in self.scan_items(logical) if "doc" in i]
