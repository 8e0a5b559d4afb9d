"""Machinery shared by every service; imports no service (see docs/architecture.md)."""
