"""Placement request bodies (strict JSON types, upstream's limits) and response views.

Field presence depends on the microversion; views take the negotiated
version and add fields exactly from the version upstream added them.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from pocketstack.core.microversion import Version
from pocketstack.placement import candidates, models
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


# Allocations: the body changed shape several times -------------------------------------

ClassName = Annotated[str, StringConstraints(pattern=RC_PATTERN)]
Amount = Annotated[int, Field(ge=1, le=MAX_INT)]
ExternalId = Annotated[str, StringConstraints(min_length=1, max_length=255)]
UUID_PATTERN = r"^[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}$"
ProviderUuid = Annotated[str, StringConstraints(pattern=UUID_PATTERN)]


class ProviderRef(Body):
    uuid: ProviderUuid


class ListedAllocation(Body):
    resource_provider: ProviderRef
    resources: dict[ClassName, Amount] = Field(min_length=1)


class AllocationsV1_0(Body):
    allocations: list[ListedAllocation] = Field(min_length=1)

    def by_provider(self) -> dict[str, dict[str, int]]:
        return {a.resource_provider.uuid: dict(a.resources) for a in self.allocations}


class AllocationsV1_8(AllocationsV1_0):
    project_id: ExternalId
    user_id: ExternalId


class ProviderAllocation(Body):
    generation: int | None = None
    resources: dict[ClassName, Amount] = Field(min_length=1)


class AllocationsV1_12(Body):
    allocations: dict[ProviderUuid, ProviderAllocation]
    project_id: ExternalId
    user_id: ExternalId

    def by_provider(self) -> dict[str, dict[str, int]]:
        return {rp: dict(a.resources) for rp, a in self.allocations.items()}


class AllocationsV1_28(AllocationsV1_12):
    consumer_generation: int | None


class AllocationsV1_34(AllocationsV1_28):
    mappings: dict[str, list[ProviderUuid]] | None = None


class AllocationsV1_38(AllocationsV1_34):
    consumer_type: Annotated[
        str, StringConstraints(pattern=r"^[A-Z0-9_]+$", min_length=1, max_length=255)
    ]


def allocation_body_model(version: Version) -> type[Body]:
    """The PUT /allocations/{consumer} (and POST /allocations item) body at `version`."""
    for minimum, model in (
        (Version(1, 38), AllocationsV1_38),
        (Version(1, 34), AllocationsV1_34),
        (Version(1, 28), AllocationsV1_28),
        (Version(1, 12), AllocationsV1_12),
        (Version(1, 8), AllocationsV1_8),
    ):
        if version >= minimum:
            return model
    return AllocationsV1_0


def consumer_allocations_view(
    consumer: placement_service.ConsumerView | None, version: Version
) -> dict[str, Any]:
    if consumer is None or not consumer.allocations:
        return {"allocations": {}}
    body: dict[str, Any] = {
        "allocations": {
            rp: {"generation": consumer.provider_generations[rp], "resources": resources}
            for rp, resources in consumer.allocations.items()
        }
    }
    if version >= Version(1, 12):
        body["project_id"] = consumer.project_id
        body["user_id"] = consumer.user_id
    if version >= Version(1, 28):
        body["consumer_generation"] = consumer.generation
    if version >= Version(1, 38):
        body["consumer_type"] = consumer.consumer_type or "unknown"
    return body


def candidates_view(
    snapshot: candidates.Snapshot,
    found: list[candidates.Candidate],
    version: Version,
    requested: set[str],
) -> dict[str, Any]:
    """The allocation_requests and provider_summaries of GET /allocation_candidates."""
    nested_aware = version >= Version(1, 29)
    requests = []
    for candidate in found:
        totals = candidate.totals()
        if version >= Version(1, 12):
            request: dict[str, Any] = {
                "allocations": {snapshot.nodes[n].uuid: {"resources": r} for n, r in totals.items()}
            }
        else:
            request = {
                "allocations": [
                    {"resource_provider": {"uuid": snapshot.nodes[n].uuid}, "resources": r}
                    for n, r in totals.items()
                ]
            }
        if version >= Version(1, 34):
            request["mappings"] = {
                suffix: [snapshot.nodes[n].uuid for n in assignment]
                for suffix, assignment in candidate.by_group
            }
        requests.append(request)
    summaries = {}
    for node in candidates.summary_nodes(snapshot, found, nested_aware):
        resources = {
            cls: {"capacity": cap.capacity, "used": snapshot.used(node.id, cls)}
            for cls, cap in node.inventory.items()
            if version >= Version(1, 27) or cls in requested
        }
        summary: dict[str, Any] = {"resources": resources}
        if version >= Version(1, 17):
            summary["traits"] = sorted(node.traits)
        if nested_aware:
            parent = snapshot.nodes.get(node.parent_id) if node.parent_id else None
            summary["parent_provider_uuid"] = parent.uuid if parent else None
            summary["root_provider_uuid"] = snapshot.nodes[node.root_id].uuid
        summaries[node.uuid] = summary
    return {"allocation_requests": requests, "provider_summaries": summaries}
