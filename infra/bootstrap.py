"""First start of a cloud stack, run once from the operator's machine after `pulumi up`:

    python -m infra.bootstrap --prefix modelfleet-dev --region eu-west-1

It does in the cloud what `make up` does locally: creates the projects `default` and `_system`,
prints the admin key of `default` and the platform admin key (once; only their hashes are kept),
and registers the worker nodes' key (read from the stack's Secrets Manager secret) as a `node`
key of `_system`. Uses the operator's AWS credentials; safe to run again (it mints nothing new
when the keys exist).
"""

from __future__ import annotations

import argparse
import sys

import boto3

from modelfleet.config import Settings
from modelfleet.control.container import ControlPlane, utcnow
from modelfleet.resources import Names


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m infra.bootstrap", description=__doc__.splitlines()[0])
    p.add_argument("--prefix", required=True, help="the stack's modelfleet:prefix")
    p.add_argument("--region", required=True)
    args = p.parse_args(argv)
    session = boto3.session.Session(region_name=args.region)
    account = session.client("sts").get_caller_identity()["Account"]
    settings = Settings(
        stack=args.prefix, region=args.region, names=Names(prefix=args.prefix, account=account)
    )
    cp = ControlPlane.build(settings)
    now = utcnow()
    admin = cp.keys.bootstrap(now, None)
    platform_admin = cp.keys.bootstrap_platform_admin(now, None)
    node_key = session.client("secretsmanager").get_secret_value(SecretId=f"{args.prefix}/node-key")[
        "SecretString"
    ]
    cp.keys.ensure_node_key(node_key, now)
    if admin:
        print(f"admin API key of project 'default' (shown once):\n  {admin}")
    if platform_admin:
        print(f"platform admin API key (project '_system'; shown once):\n  {platform_admin}")
    print("the worker nodes' key is registered; workers join within a heartbeat")
    return 0


if __name__ == "__main__":
    sys.exit(main())
