"""Models and deployments as code: Pulumi resources backed by the platform's own HTTP API.

    from infra.provider import Deployment, Model

    model = Model("digits", url=url, api_key=key, name="digits", format="onnx", files=["digits.onnx"])
    Deployment("digits", url=url, api_key=key, deployment_id="digits",
               versions=[{"model_id": model.model_id, "weight": 100}], allocations=2)

`pulumi.dynamic` providers: create, diff, update and delete call the platform, so a stack needs
no AWS access to the platform's account, only its URL and an API key (kept as a Pulumi secret).
"""

from infra.provider.deployment import Deployment, DeploymentProvider
from infra.provider.edge import EdgeService, EdgeServiceProvider
from infra.provider.model import Model, ModelProvider

__all__ = ["Deployment", "DeploymentProvider", "EdgeService", "EdgeServiceProvider", "Model", "ModelProvider"]
