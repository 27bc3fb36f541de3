"""What an operator sees of a running server: request ids, log lines, Prometheus metrics."""
