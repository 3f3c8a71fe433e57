"""Upstream credentials: the encrypted key pool, its health, and provider adapters."""
