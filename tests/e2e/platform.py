"""The real local platform for end-to-end tests: the package's launcher with the tests' settings
(fast heartbeats, nodes lost after 3 s, 4 processors per node, adaptive allocations on a test's time
scale), and a record of what was started so a failure report can show the logs."""

from __future__ import annotations

from pathlib import Path

from modelfleet.local.launcher import LaunchOptions, LocalPlatform, launch, wait_for

__all__ = ["ADMIN_KEY", "PLATFORM_KEY", "STARTED", "RunningPlatform", "start_platform", "wait_for"]

ADMIN_KEY = "mfk_e2eadmin:e2e-admin-secret-0123456789abcdef"
PLATFORM_KEY = "mfk_e2eplatform:e2e-platform-secret-0123456789abcdef"  # admin of project _system
RunningPlatform = LocalPlatform

# Platforms started by the running test, so a failure report can show their logs.
STARTED: list[LocalPlatform] = []

TEST_ENV = {
    "MODELFLEET_PLATFORM_API_KEY": PLATFORM_KEY,
    "MODELFLEET_MAX_BODY_BYTES": str(4 * 1024 * 1024),
    # Adaptive allocations on a test's time scale: tick twice a second, idle to zero in 3 s.
    "MODELFLEET_AUTOSCALE_INTERVAL": "0.5",
    "MODELFLEET_SCALE_TO_ZERO_AFTER": "3",
}


def start_platform(
    home: Path, extra_env: dict[str, str] | None = None, nodes: int = 2, timeout: float = 90.0
) -> LocalPlatform:
    options = LaunchOptions(
        nodes=nodes,
        node_processors=4,
        heartbeat_interval=0.5,
        node_lost_after=3,
        env={**TEST_ENV, **(extra_env or {})},
    )
    platform = launch(home, ADMIN_KEY, options, timeout=timeout)
    STARTED.append(platform)
    return platform
