"""Item-level rollback for the stand-in's DynamoDB transactions.

moto backs up every table a ``TransactWriteItems`` touches with ``copy.deepcopy`` before applying
it, so one transaction costs time in proportion to the *tables'* sizes: about 5 ms against a
100-item table and 150 ms against a 5,000-item one (measured on the 2-core CI machine). The local
platform's event log and task tables only grow, so every state change slowed down the longer a
platform ran.

:func:`install` keeps moto's transaction logic (conditions, validation, cancellation reasons) and
replaces only its backup: the items the transaction names are copied before it runs and put back
if it is cancelled, and the whole-table copy becomes a no-op for the duration of the call. Outside
a transaction a table still deep-copies as before (backups and restores use that).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from contextvars import ContextVar
from typing import Any

__all__ = ["install"]

# True while a transaction runs on this thread: moto's whole-table backup shares the table instead.
_SHARE_TABLES: ContextVar[bool] = ContextVar("modelfleet_share_tables", default=False)
_INSTALLED = "_modelfleet_item_rollback"

# (table, hash key, range key or None, the item as it was, or None when it did not exist)
Saved = tuple[Any, Any, Any, Any]


def install() -> None:
    """Patch moto's DynamoDB backend (idempotent)."""
    from moto.dynamodb.models import DynamoDBBackend
    from moto.dynamodb.models.table import Table

    original: Callable[..., Any] = DynamoDBBackend.transact_write_items
    if getattr(original, _INSTALLED, False):
        return

    def transact_write_items(self: Any, transact_items: list[dict[str, Any]]) -> Any:
        saved = _save_items(self, transact_items)
        token = _SHARE_TABLES.set(True)
        try:
            return original(self, transact_items)
        except Exception:
            _restore(saved)
            raise
        finally:
            _SHARE_TABLES.reset(token)

    setattr(transact_write_items, _INSTALLED, True)
    DynamoDBBackend.transact_write_items = transact_write_items  # type: ignore[method-assign]
    Table.__deepcopy__ = _table_deepcopy  # type: ignore[attr-defined]


def _table_deepcopy(self: Any, memo: dict[int, Any]) -> Any:
    if _SHARE_TABLES.get():
        return self  # moto's "backup" of a table in a transaction: the items are saved one by one
    cls: Any = type(self)
    result = cls.__new__(cls)
    memo[id(self)] = result
    for name, value in self.__dict__.items():
        setattr(result, name, copy.deepcopy(value, memo))
    return result


def _save_items(backend: Any, transact_items: list[dict[str, Any]]) -> list[Saved]:
    """A copy of every item the transaction names (requests moto will refuse are skipped: it
    refuses them before writing anything)."""
    from moto.dynamodb.models.dynamo_type import DynamoType

    saved: list[Saved] = []
    for entry in transact_items:
        try:
            (op_type, op), *_ = entry.items()
            table = backend.get_table(op["TableName"])
            key = op["Item"] if op_type == "Put" else op["Key"]
            hash_key = DynamoType(key[table.hash_key_attr])
            range_key = DynamoType(key[table.range_key_attr]) if table.range_key_attr else None
            current = table.get_item(hash_key, range_key)
        except Exception:  # moto answers this request with its own validation error
            continue
        saved.append((table, hash_key, range_key, copy.deepcopy(current) if current else None))
    return saved


def _restore(saved: list[Saved]) -> None:
    for table, hash_key, range_key, item in reversed(saved):
        if item is None and range_key is not None:
            table.items.get(hash_key, {}).pop(range_key, None)
        elif item is None:
            table.items.pop(hash_key, None)
        elif range_key is not None:
            table.items[hash_key][range_key] = item
        else:
            table.items[hash_key] = item
