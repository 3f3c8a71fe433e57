"""Guards in front of every route: trusted hosts and CORS."""
