"""The one handler table: every Lambda function of the platform, one line each.

A handler that does not exist yet is declared here all the same (`planned=True`): the program
creates its function, routes and grants, so landing the module is the only other step. The infra
tests check that every module under `functions/` with a top-level `handler` has a line here, and
that every line has a function in the graph.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from importlib.util import find_spec


class Access(StrEnum):
    """What a function may touch; infra/functions.py turns each into named IAM actions on named
    resources."""

    STATE = "state"  # read and write every table of the spec (items, queries, transactions)
    KEYS_READ = "keys_read"  # get one API key record (the authorizer)
    ROUTES_READ = "routes_read"  # read deployments, routes, models and nodes (the invoke router)
    ARTIFACTS = "artifacts"  # objects of the artifacts bucket (and presigning URLs for them)
    EVENTS = "events"  # publish status events to the events topic
    NOTIFY = "notify"  # publish to the project-owned topics named in services (same account)
    METRICS = "metrics"  # publish the platform's metrics (the worker demand signal)
    SCHEDULES = "schedules"  # create and delete one-time schedules in the platform's group
    QUEUES_SEND = "queues_send"  # send messages to the spec's queues (planners enqueue tasks)


@dataclass(frozen=True)
class HandlerSpec:
    name: str  # logical name; the function is `<prefix>-<name>`
    entry: str  # "functions/api/app.py:handler"
    purpose: str
    timeout_seconds: int
    memory_mb: int
    access: frozenset[Access]
    # Caps the function's concurrency so a burst cannot overrun what it calls (DynamoDB scans,
    # third-party topics). None: unreserved, scales with traffic.
    reserved_concurrency: int | None = None
    in_vpc: bool = False  # it must reach the worker nodes' private data ports
    planned: bool = False  # its module lands with a later issue

    @property
    def module(self) -> str:
        return self.entry.split(":")[0].removesuffix(".py").replace("/", ".")

    @property
    def lambda_handler(self) -> str:
        """Lambda's `handler` setting: `functions.api.app.handler`."""
        return f"{self.module}.{self.entry.split(':')[1]}"

    def module_exists(self) -> bool:
        try:
            return find_spec(self.module) is not None
        except ModuleNotFoundError:  # its package does not exist either
            return False


# API Gateway HTTP APIs give an integration at most 30 s; 29 s leaves room for its own overhead.
API_TIMEOUT = 29
CONTROL = frozenset({Access.STATE, Access.ARTIFACTS, Access.EVENTS})

HANDLERS: tuple[HandlerSpec, ...] = (
    HandlerSpec("api", "functions/api/app.py:handler", "native control API", API_TIMEOUT, 1024, CONTROL),
    HandlerSpec("es_api", "functions/es_api/app.py:handler", "the _ml face", API_TIMEOUT, 1024, CONTROL),
    HandlerSpec(
        "authorizer", "functions/authorizer.py:handler", "HTTP API Lambda authorizer", 5, 512,
        frozenset({Access.KEYS_READ}),
    ),
    # Serves every SCHEDULES task (node sweep, outbox relay, autoscale + the demand metric) and the
    # one-time schedules (auto-stop, pipeline triggers). Reserved: ticks must not pile up into
    # parallel table scans when one runs long.
    HandlerSpec(
        "scheduler", "functions/scheduler.py:handler", "EventBridge Scheduler target", 60, 512,
        frozenset({*CONTROL, Access.METRICS, Access.SCHEDULES, Access.NOTIFY}), reserved_concurrency=5,
    ),
    HandlerSpec(
        "services", "functions/service_api/app.py:handler", "service deployments /v1/{project_id}",
        API_TIMEOUT, 1024, frozenset({*CONTROL, Access.SCHEDULES, Access.NOTIFY}),
    ),
    HandlerSpec(
        "pipelines", "functions/pipelines_api/app.py:handler", "pipeline deployments and triggers",
        API_TIMEOUT, 1024, frozenset({*CONTROL, Access.SCHEDULES}),
    ),
    HandlerSpec(
        "console", "functions/console.py:handler", "web console pages and its API /console", API_TIMEOUT,
        512, frozenset({Access.ROUTES_READ, Access.KEYS_READ}), planned=True,
    ),
    # The data plane (functions/invoke.py). It writes state only to wake a deployment scaled to
    # zero (adaptive allocations), which also publishes that state change.
    HandlerSpec(
        "invoke", "functions/invoke.py:handler", "invoke router: /v2, _infer, /metrics to the workers",
        API_TIMEOUT, 1769, frozenset({Access.STATE, Access.EVENTS}), in_vpc=True,
    ),
    # The batch-tasks queue's consumer (modelfleet/batch): plans jobs into tasks and runs them.
    HandlerSpec(
        "batch_planner", "functions/batch.py:handler", "plans batch jobs and runs their tasks (SQS consumer)",
        300, 1024, frozenset({*CONTROL, Access.QUEUES_SEND, Access.ARTIFACTS}), reserved_concurrency=10,
    ),
)  # fmt: skip


def handler_spec(name: str) -> HandlerSpec:
    found = next((h for h in HANDLERS if h.name == name), None)
    if found is None:
        raise KeyError(f"no handler named {name!r} in infra/handlers.py")
    return found
