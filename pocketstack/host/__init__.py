"""Thin, typed wrappers over the host (netns, links, nft, tc, processes); imports no service.

Empty until the first real driver needs it: identity has no host-side resources.
"""
