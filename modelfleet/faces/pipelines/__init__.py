"""The pipeline face: the `craft-ai-sdk` client's HTTP contract, translated onto the platform's
keys, storage and the pipeline execution engine (modelfleet.pipelines)."""
