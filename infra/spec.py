"""The shared resource spec (modelfleet/resources.py) as one value the components iterate, so a
test can build the program from the spec plus a resource that is not in it yet."""

from __future__ import annotations

from dataclasses import dataclass

from modelfleet import resources as r


@dataclass(frozen=True)
class PlatformSpec:
    tables: tuple[r.TableSpec, ...] = r.TABLES
    queues: tuple[r.QueueSpec, ...] = r.QUEUES
    topics: tuple[r.TopicSpec, ...] = r.TOPICS
    buckets: tuple[r.BucketSpec, ...] = r.BUCKETS
    subscriptions: tuple[r.Subscription, ...] = r.SUBSCRIPTIONS
    schedules: tuple[r.ScheduleSpec, ...] = r.SCHEDULES
