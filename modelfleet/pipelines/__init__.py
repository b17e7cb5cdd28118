"""The pipeline execution engine: executor processes that import a user's function, the
per-deployment runners that feed them (Queue or Parallel), and the engine that keeps execution
records. Kept free of heavy imports: the executor process imports this package."""
