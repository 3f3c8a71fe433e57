"""The management REST API (FastAPI), mounted beside the proxy under `/api/v1`."""
