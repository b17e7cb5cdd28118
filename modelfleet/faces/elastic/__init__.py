"""The Elasticsearch trained-model face (`/_ml/trained_models`): a translation onto the core model.

Models become `ModelRecord`s (the trained-model config kept in `face`), deployments become
`DeploymentRecord`s of kind `ml` whose one version carries the total `number_of_allocations`, and
routes are Elasticsearch's routing table. Nothing here decides placement or lifecycle: the core does.
"""
