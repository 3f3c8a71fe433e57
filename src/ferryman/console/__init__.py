"""The web console: server-rendered pages over the management API's own services, under
one prefix (`FERRYMAN_CONSOLE_PATH`), loaded with the management API on first use."""
