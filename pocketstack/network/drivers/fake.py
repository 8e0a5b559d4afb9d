"""The fake data plane: nothing on the host; every bound port counts as plugged."""

from __future__ import annotations

from pocketstack.network.drivers import NetworkSetup, RouterSetup


class FakeDriver:
    name = "fake"

    def __init__(self) -> None:
        self._networks: dict[str, NetworkSetup] = {}
        self._routers: dict[str, RouterSetup] = {}

    def vif_details(self, network_id: str) -> dict[str, object] | None:
        return None

    def made(self) -> set[str]:
        return set(self._networks)

    def ensure(self, setup: NetworkSetup) -> None:
        self._networks[setup.network_id] = setup

    def remove(self, network_id: str) -> None:
        self._networks.pop(network_id, None)

    def plugged(self, network_id: str) -> set[str]:
        return set()

    def routers_made(self) -> set[str]:
        return set(self._routers)

    def ensure_router(self, setup: RouterSetup) -> None:
        self._routers[setup.router_id] = setup

    def remove_router(self, router_id: str) -> None:
        self._routers.pop(router_id, None)
