"""Logs, metrics, health and the gateway's own responses."""
