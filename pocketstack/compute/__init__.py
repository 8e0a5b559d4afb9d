"""Compute: the Nova v2.1 API, its scheduler on placement, cells v2 and host agents."""
