"""The VPC the invoke router and the worker nodes share.

Workers run in public subnets with public IPs (they call the control plane's HTTPS API, S3
presigned URLs and ECR; a NAT gateway would cost more than the rest of an idle stack), and their
security group admits nothing but the invoke router. The invoke router runs in private subnets
with gateway endpoints for DynamoDB and S3 (free), so it needs no internet route at all.
"""

from __future__ import annotations

import ipaddress

import pulumi
import pulumi_aws as aws

from infra.components.base import StackContext, child

WORKER_HTTP_PORT = 8081  # /healthz, /_sync, /infer (docker/worker.Dockerfile)
WORKER_DATA_PORT = 8082  # the framed data port the invoke router forwards inference to
ZONES = ("a", "b")


class Network(pulumi.ComponentResource):
    vpc: aws.ec2.Vpc
    public_subnets: list[aws.ec2.Subnet]
    private_subnets: list[aws.ec2.Subnet]
    router_sg: aws.ec2.SecurityGroup
    worker_sg: aws.ec2.SecurityGroup

    def __init__(self, name: str, ctx: StackContext, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("modelfleet:platform:Network", name, None, opts)
        o = child(self)
        cidrs = [str(n) for n in ipaddress.ip_network(ctx.cfg.vpc_cidr).subnets(new_prefix=20)]
        self.vpc = aws.ec2.Vpc(
            "vpc",
            cidr_block=ctx.cfg.vpc_cidr,
            enable_dns_hostnames=True,
            enable_dns_support=True,
            tags={**ctx.tags, "Name": ctx.cfg.prefix},
            opts=o,
        )
        igw = aws.ec2.InternetGateway("igw", vpc_id=self.vpc.id, tags=ctx.tags, opts=o)
        public_rt = aws.ec2.RouteTable(
            "public-rt",
            vpc_id=self.vpc.id,
            routes=[{"cidr_block": "0.0.0.0/0", "gateway_id": igw.id}],
            tags=ctx.tags,
            opts=o,
        )
        private_rt = aws.ec2.RouteTable("private-rt", vpc_id=self.vpc.id, tags=ctx.tags, opts=o)
        self.public_subnets, self.private_subnets = [], []
        for i, zone in enumerate(ZONES):
            az = f"{ctx.region}{zone}"
            pub = aws.ec2.Subnet(
                f"public-{zone}",
                vpc_id=self.vpc.id,
                cidr_block=cidrs[i],
                availability_zone=az,
                tags={**ctx.tags, "Name": f"{ctx.cfg.prefix}-public-{zone}"},
                opts=o,
            )
            priv = aws.ec2.Subnet(
                f"private-{zone}",
                vpc_id=self.vpc.id,
                cidr_block=cidrs[len(ZONES) + i],
                availability_zone=az,
                tags={**ctx.tags, "Name": f"{ctx.cfg.prefix}-private-{zone}"},
                opts=o,
            )
            aws.ec2.RouteTableAssociation(
                f"public-{zone}-rt", subnet_id=pub.id, route_table_id=public_rt.id, opts=o
            )
            aws.ec2.RouteTableAssociation(
                f"private-{zone}-rt", subnet_id=priv.id, route_table_id=private_rt.id, opts=o
            )
            self.public_subnets.append(pub)
            self.private_subnets.append(priv)
        for service in ("dynamodb", "s3"):
            aws.ec2.VpcEndpoint(
                f"endpoint-{service}",
                vpc_id=self.vpc.id,
                service_name=f"com.amazonaws.{ctx.region}.{service}",
                vpc_endpoint_type="Gateway",
                route_table_ids=[private_rt.id],
                tags=ctx.tags,
                opts=o,
            )

        self.router_sg = aws.ec2.SecurityGroup(
            "router-sg",
            vpc_id=self.vpc.id,
            description="modelfleet invoke router (Lambda)",
            tags=ctx.tags,
            opts=o,
        )
        self.worker_sg = aws.ec2.SecurityGroup(
            "worker-sg",
            vpc_id=self.vpc.id,
            description="modelfleet worker nodes: only the invoke router",
            tags=ctx.tags,
            opts=o,
        )
        for port in (WORKER_HTTP_PORT, WORKER_DATA_PORT):
            aws.vpc.SecurityGroupIngressRule(
                f"worker-from-router-{port}",
                security_group_id=self.worker_sg.id,
                referenced_security_group_id=self.router_sg.id,
                ip_protocol="tcp",
                from_port=port,
                to_port=port,
                description="the invoke router only",
                opts=o,
            )
            aws.vpc.SecurityGroupEgressRule(
                f"router-to-worker-{port}",
                security_group_id=self.router_sg.id,
                referenced_security_group_id=self.worker_sg.id,
                ip_protocol="tcp",
                from_port=port,
                to_port=port,
                opts=o,
            )
        # HTTPS out: the router to the DynamoDB/S3 gateway endpoints; workers to the control plane,
        # presigned S3 URLs and ECR.
        for sg_name, sg in (("router", self.router_sg), ("worker", self.worker_sg)):
            aws.vpc.SecurityGroupEgressRule(
                f"{sg_name}-https-out",
                security_group_id=sg.id,
                cidr_ipv4="0.0.0.0/0",
                ip_protocol="tcp",
                from_port=443,
                to_port=443,
                opts=o,
            )
        self.register_outputs({"vpc_id": self.vpc.id})
