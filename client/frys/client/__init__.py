"""Frys WebSocket."""
