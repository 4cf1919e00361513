"""Prometheus remote_write for probes behind NAT, with a durable outbox."""
