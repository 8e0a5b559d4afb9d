"""Identity: a Keystone v3 compatible API, tokens, RBAC data and the service catalog."""
