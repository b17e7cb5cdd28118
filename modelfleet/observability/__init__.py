"""What operators watch: Prometheus metrics of the gateway and nodes, JSON logs with a correlation id."""
