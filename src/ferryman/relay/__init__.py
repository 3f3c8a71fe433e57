"""Chat widget relays: widget sessions bound to an origin, messages relayed to a
workflow and streamed back as SSE, and their history."""
