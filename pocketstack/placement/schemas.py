"""Placement response views; request bodies are validated in bodies.py.

Field presence depends on the microversion; views take the negotiated
version and add fields exactly from the version upstream added them.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pocketstack.core.microversion import Version
from pocketstack.placement import candidates, models
from pocketstack.placement import service as placement_service

V1_14 = Version(1, 14)
V1_15 = Version(1, 15)


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
            summary["traits"] = sorted(node.traits, key=lambda t: snapshot.trait_ids.get(t, 0))
        if nested_aware:
            parent = snapshot.nodes.get(node.parent_id) if node.parent_id else None
            summary["parent_provider_uuid"] = parent.uuid if parent else None
            summary["root_provider_uuid"] = snapshot.nodes[node.root_id].uuid
        summaries[node.uuid] = summary
    return {"allocation_requests": requests, "provider_summaries": summaries}
