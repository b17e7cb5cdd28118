"""Errors the AWS adapters raise instead of botocore's ClientError.

AdapterError
├── ItemNotFound        the key has no item / object
├── ConditionFailed     a conditional write lost (optimistic lock, uniqueness)
└── BackendUnavailable  AWS (or the moto server) could not be reached or failed
"""

from __future__ import annotations


class AdapterError(Exception):
    pass


class ItemNotFound(AdapterError):
    pass


class ConditionFailed(AdapterError):
    pass


class BackendUnavailable(AdapterError):
    pass
