"""Placement request bodies (strict JSON types, upstream's limits) and response views.

Field presence depends on the microversion; views take the negotiated
version and add fields exactly from the version upstream added them.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from pocketstack.core.microversion import Version
from pocketstack.placement import models
from pocketstack.placement import service as placement_service

MAX_INT = 2147483647
FLOAT_MAX = 3.40282e38
RC_PATTERN = r"^([A-Z0-9_]+|CUSTOM_[A-Z0-9_]+)$"
V1_14 = Version(1, 14)
V1_15 = Version(1, 15)


class Body(BaseModel):
    """Strict like upstream's JSON schemas: no coercion, no unknown fields."""

    model_config = ConfigDict(extra="forbid", strict=True)


class ProviderCreate(Body):
    name: str = Field(min_length=1, max_length=200)
    uuid: str | None = Field(default=None, pattern=r"^[0-9a-fA-F-]{32,36}$")
    parent_provider_uuid: str | None = Field(default=None, pattern=r"^[0-9a-fA-F-]{32,36}$")


class ProviderUpdate(Body):
    name: str = Field(min_length=1, max_length=200)
    parent_provider_uuid: str | None = Field(default=None, pattern=r"^[0-9a-fA-F-]{32,36}$")


class InventoryFields(Body):
    total: int = Field(ge=1, le=MAX_INT)
    reserved: int = Field(default=0, ge=0, le=MAX_INT)
    min_unit: int = Field(default=1, ge=1, le=MAX_INT)
    max_unit: int | None = Field(default=None, ge=1, le=MAX_INT)
    step_size: int = Field(default=1, ge=1, le=MAX_INT)
    allocation_ratio: float = Field(default=1.0, le=FLOAT_MAX)

    def spec(self) -> placement_service.InventorySpec:
        return placement_service.InventorySpec(
            total=self.total,
            reserved=self.reserved,
            min_unit=self.min_unit,
            max_unit=self.max_unit,
            step_size=self.step_size,
            allocation_ratio=self.allocation_ratio,
        )


class InventoryPut(InventoryFields):
    resource_provider_generation: int


class InventoryPost(InventoryFields):
    resource_class: str = Field(pattern=RC_PATTERN)
    resource_provider_generation: int | None = None


class InventoriesPut(Body):
    resource_provider_generation: int
    inventories: dict[str, InventoryFields]


class ResourceClassCreate(Body):
    name: str = Field(max_length=255, pattern=r"^CUSTOM_[A-Z0-9_]+$")


class TraitsPut(Body):
    traits: list[str]
    resource_provider_generation: int


class AggregatesPut(Body):
    aggregates: list[str]
    resource_provider_generation: int


def timestamp(moment: datetime) -> str:
    """HTTP date for last-modified."""
    return moment.strftime("%a, %d %b %Y %H:%M:%S GMT")


def _provider_links(base: str, provider_uuid: str, version: Version) -> list[dict[str, str]]:
    url = f"{base}/resource_providers/{provider_uuid}"
    rels = ["inventories", "usages"]
    if version >= Version(1, 1):
        rels.append("aggregates")
    if version >= Version(1, 6):
        rels.append("traits")
    if version >= Version(1, 11):
        rels.append("allocations")
    return [{"rel": "self", "href": url}] + [{"rel": r, "href": f"{url}/{r}"} for r in rels]


def provider_view(p: placement_service.Provider, base: str, version: Version) -> dict[str, Any]:
    body: dict[str, Any] = {
        "uuid": p.uuid,
        "name": p.name,
        "generation": p.generation,
        "links": _provider_links(base, p.uuid, version),
    }
    if version >= V1_14:
        body["parent_provider_uuid"] = p.parent_uuid
        body["root_provider_uuid"] = p.root_uuid
    return body


def inventory_view(inv: models.Inventory) -> dict[str, Any]:
    return {
        "total": inv.total,
        "reserved": inv.reserved,
        "min_unit": inv.min_unit,
        "max_unit": inv.max_unit,
        "step_size": inv.step_size,
        "allocation_ratio": inv.allocation_ratio,
    }


def resource_class_view(rc: models.ResourceClass, base: str) -> dict[str, Any]:
    return {
        "name": rc.name,
        "links": [{"rel": "self", "href": f"{base}/resource_classes/{rc.name}"}],
    }
