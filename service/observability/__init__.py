"""How operators see Beacon: Prometheus metrics, Sentry, structured logs."""
