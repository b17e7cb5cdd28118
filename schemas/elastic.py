"""Request bodies of the Elasticsearch trained-model face (`/_ml/trained_models`), as the official
clients send them. Unknown fields are refused, as Elasticsearch's parsers do."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class EsRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ModelInput(EsRequest):
    field_names: list[str] = Field(min_length=1, max_length=16)


class TrainedModelPut(EsRequest):
    """`PUT /_ml/trained_models/{model_id}`: the config; the definition comes in parts."""

    model_type: str | None = None
    inference_config: dict[str, Any] | None = None
    input: ModelInput | None = None
    description: str | None = Field(default=None, max_length=4096)
    tags: list[str] = Field(default_factory=list, max_length=64)
    metadata: dict[str, Any] = Field(default_factory=dict)
    model_size_bytes: int | None = Field(default=None, ge=0)
    platform_architecture: str | None = None
    prefix_strings: dict[str, str] | None = None
    definition: dict[str, Any] | None = None
    compressed_definition: str | None = None
    location: dict[str, Any] | None = None
    estimated_operations: int | None = None
    per_deployment_memory_bytes: int | None = Field(default=None, ge=0)
    per_allocation_memory_bytes: int | None = Field(default=None, ge=0)


class DefinitionPart(EsRequest):
    """`PUT /_ml/trained_models/{model_id}/definition/{part}`."""

    definition: str
    total_definition_length: int
    total_parts: int


class VocabularyPut(EsRequest):
    """`PUT /_ml/trained_models/{model_id}/vocabulary`."""

    vocabulary: list[str] = Field(min_length=1, max_length=1_000_000)
    merges: list[str] | None = None
    scores: list[float] | None = None


class AdaptiveAllocations(EsRequest):
    enabled: bool
    min_number_of_allocations: int | None = None
    max_number_of_allocations: int | None = None


class StartBody(EsRequest):
    adaptive_allocations: AdaptiveAllocations | None = None
    # Elasticsearch also accepts the query parameters in the body.
    number_of_allocations: int | None = None
    threads_per_allocation: int | None = None
    queue_capacity: int | None = None
    priority: str | None = None
    cache_size: str | int | None = None
    deployment_id: str | None = None
    timeout: str | None = None
    wait_for: str | None = None


class UpdateBody(EsRequest):
    number_of_allocations: int | None = None
    adaptive_allocations: AdaptiveAllocations | None = None


class StopBody(EsRequest):
    allow_no_match: bool | None = None
    force: bool | None = None
    id: str | None = None


class InferBody(EsRequest):
    docs: list[dict[str, Any]] = Field(min_length=1, max_length=1024)
    inference_config: dict[str, Any] | None = None
