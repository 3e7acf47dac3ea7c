"""Frys WebSocket process runtime.

Helpers every process-level component shares: the event loop it runs on, the embedded
``nats-server`` it starts for development and tests, and a whole local installation of
NATS and gateway processes. It depends on nothing but :mod:`frys.shared`, so the gateway,
the router, the load tool and the command line can all use it without depending on each
other.
"""
