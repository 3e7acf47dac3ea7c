"""Python servers that Frys is benchmarked against (``frys-ws loadtest fanout --vs ...``).

Each speaks a benchmark dialect of :mod:`frys.loadtest.dialects` and broadcasts what its
publisher connection sends to the subscribers of a room, the way an application built on
that library would.
"""
