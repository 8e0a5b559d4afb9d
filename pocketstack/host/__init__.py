"""Thin, typed wrappers over the host (GPUs through NVML; later netns, links, nft, tc,
processes); imports no service."""
