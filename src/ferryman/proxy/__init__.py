"""The proxy engine: routing, forwarding and streaming, in pure ASGI."""
