"""One `pulumi.ComponentResource` per concern; infra/platform.py wires them together."""
