"""The HTTP API: a route per line of infra/routes.py, a Lambda proxy integration per handler, the
Lambda authorizer (short result cache), JSON access logs, and stage-wide throttling."""

from __future__ import annotations

import json
import re

import pulumi
import pulumi_aws as aws

from infra.components.base import StackContext, child
from infra.routes import NODE_ROUTE_KEYS, ROUTES, Auth, route_keys

INTEGRATION_TIMEOUT_MS = 30_000  # HTTP APIs allow at most 30 s per integration
ACCESS_LOG_FORMAT = json.dumps(
    {
        "requestId": "$context.requestId",
        "ip": "$context.identity.sourceIp",
        "routeKey": "$context.routeKey",
        "status": "$context.status",
        "latencyMs": "$context.responseLatency",
        "integrationLatencyMs": "$context.integrationLatency",
        "responseLength": "$context.responseLength",
        "authorizerError": "$context.authorizer.error",
        "integrationError": "$context.integrationErrorMessage",
        "keyId": "$context.authorizer.key_id",
        "projectId": "$context.authorizer.project_id",
    },
    sort_keys=True,
)


class Api(pulumi.ComponentResource):
    api: aws.apigatewayv2.Api
    stage: aws.apigatewayv2.Stage
    routes: dict[str, aws.apigatewayv2.Route]
    url: pulumi.Output[str]

    def __init__(
        self,
        name: str,
        ctx: StackContext,
        functions: dict[str, aws.lambda_.Function],
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("modelfleet:platform:Api", name, None, opts)
        o = child(self)
        cfg = ctx.cfg
        self.api = aws.apigatewayv2.Api(
            "http-api",
            name=cfg.prefix,
            protocol_type="HTTP",
            description="modelfleet: every face",
            tags=ctx.tags,
            opts=o,
        )
        access_logs = aws.cloudwatch.LogGroup(
            "api-access-logs",
            name=f"/aws/apigateway/{cfg.prefix}",
            retention_in_days=cfg.log_retention_days,
            tags=ctx.tags,
            opts=o,
        )

        authorizer_fn = functions["authorizer"]
        authorizers = {
            Auth.BEARER: aws.apigatewayv2.Authorizer(
                "authorizer-bearer",
                api_id=self.api.id,
                name="bearer",
                authorizer_type="REQUEST",
                authorizer_uri=authorizer_fn.invoke_arn,
                authorizer_payload_format_version="2.0",
                enable_simple_responses=True,
                identity_sources=["$request.header.Authorization"],
                # A verdict is reused this long: a revoked key may pass until it ends (the
                # handlers still refuse a key past its expires_at).
                authorizer_result_ttl_in_seconds=cfg.authorizer_cache_seconds,
                opts=o,
            ),
            Auth.ANY_HEADER: aws.apigatewayv2.Authorizer(
                "authorizer-any-header",
                api_id=self.api.id,
                name="any-header",
                authorizer_type="REQUEST",
                authorizer_uri=authorizer_fn.invoke_arn,
                authorizer_payload_format_version="2.0",
                enable_simple_responses=True,
                identity_sources=[],
                authorizer_result_ttl_in_seconds=0,  # cache keys need a header every request has
                opts=o,
            ),
        }
        aws.lambda_.Permission(
            "authorizer-invoke",
            action="lambda:InvokeFunction",
            function=authorizer_fn.name,
            principal="apigateway.amazonaws.com",
            source_arn=self.api.execution_arn.apply(lambda a: f"{a}/authorizers/*"),
            opts=o,
        )

        integrations: dict[str, aws.apigatewayv2.Integration] = {}
        for handler in dict.fromkeys(r.handler for r in ROUTES):
            fn = functions[handler]
            integrations[handler] = aws.apigatewayv2.Integration(
                f"integration-{handler}",
                api_id=self.api.id,
                integration_type="AWS_PROXY",
                integration_uri=fn.invoke_arn,
                payload_format_version="2.0",
                timeout_milliseconds=INTEGRATION_TIMEOUT_MS,
                opts=o,
            )
            aws.lambda_.Permission(
                f"api-invoke-{handler}",
                action="lambda:InvokeFunction",
                function=fn.name,
                principal="apigateway.amazonaws.com",
                source_arn=self.api.execution_arn.apply(lambda a: f"{a}/*/*"),
                opts=o,
            )

        route_keys()  # refuses duplicates before anything is declared
        self.routes = {}
        for r in ROUTES:
            for key in r.keys:
                authorizer = authorizers.get(r.auth)
                self.routes[key] = aws.apigatewayv2.Route(
                    "route-" + re.sub(r"[^A-Za-z0-9]+", "-", key).strip("-").lower(),
                    api_id=self.api.id,
                    route_key=key,
                    target=integrations[r.handler].id.apply(lambda i: f"integrations/{i}"),
                    authorization_type="CUSTOM" if authorizer else "NONE",
                    authorizer_id=authorizer.id if authorizer else None,
                    opts=o,
                )
        self.stage = aws.apigatewayv2.Stage(
            "stage",
            api_id=self.api.id,
            name="$default",
            auto_deploy=True,
            access_log_settings={"destination_arn": access_logs.arn, "format": ACCESS_LOG_FORMAT},
            default_route_settings={
                "throttling_rate_limit": cfg.api_rate_limit,
                "throttling_burst_limit": cfg.api_burst_limit,
                "detailed_metrics_enabled": True,  # per-route 4xx/5xx/latency for the alarms
            },
            # With edge agents on, node registration and heartbeats get a budget of their own, so
            # a fleet of agents cannot starve the API (nor the API them).
            route_settings=[
                {
                    "route_key": key,
                    "throttling_rate_limit": cfg.edge_rate_limit + 2 * cfg.worker_max,
                    "throttling_burst_limit": int(2 * (cfg.edge_rate_limit + 2 * cfg.worker_max)),
                }
                for key in NODE_ROUTE_KEYS
            ]
            if cfg.edge_enabled
            else None,
            tags=ctx.tags,
            opts=child(self, depends_on=list(self.routes.values())),  # route settings name routes
        )
        self.url = self.stage.invoke_url
        self.register_outputs({"url": self.url})
