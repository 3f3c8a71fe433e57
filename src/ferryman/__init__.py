"""Ferryman: a self-hosted access gateway for HTTP APIs."""

__version__ = "0.1.0"
