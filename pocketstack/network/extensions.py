"""The Neutron API extensions this service implements, listed at /v2.0/extensions.

Clients and Tempest decide what to use from this list, so it names exactly
what works here, nothing more.
"""

from __future__ import annotations

from typing import Any

UPDATED = "2026-11-25T00:00:00-00:00"
_IMPLEMENTED = (
    ("binding", "Port Binding", "Expose port bindings of a virtual port to external application"),
    (
        "external-net",
        "Neutron external network",
        "Adds external network attribute to network resource.",
    ),
    ("provider", "Provider Network", "Expose mapping of virtual networks to physical networks"),
    ("quotas", "Quota management support", "Expose functions for quotas management per project"),
    (
        "quota_details",
        "Quota details management support",
        "Expose functions for quotas usage statistics per project",
    ),
    ("security-group", "security-group", "The security groups extension."),
    ("port-security", "Port Security", "Provides port security"),
    ("allowed-address-pairs", "Allowed Address Pairs", "Provides allowed address pairs"),
    ("extra_dhcp_opt", "Neutron Extra DHCP options", "Extra options configuration for DHCP."),
    ("net-mtu", "Network MTU", "Provides MTU attribute for a network resource."),
    (
        "net-mtu-writable",
        "Network MTU (writable)",
        "Provides a writable MTU attribute for a network resource.",
    ),
    (
        "standard-attr-description",
        "standard-attr-description",
        "Extension to add descriptions to standard attributes",
    ),
    (
        "standard-attr-revisions",
        "Resource revision numbers",
        "This extension will display the revision number of neutron resources.",
    ),
    (
        "standard-attr-timestamp",
        "Resource timestamps",
        "Adds created_at and updated_at fields to all Neutron resources that have Neutron "
        "standard attributes.",
    ),
    (
        "standard-attr-tag",
        "Tag support for resources with standard attribute: subnet, port, network, security_group",
        "Enables to set tag on resources with standard attribute.",
    ),
    ("tag", "Tag support", "Enables to set tag on resources."),
    ("qos", "Quality of Service", "The Quality of Service extension."),
    (
        "qos-bw-limit-direction",
        "Direction for QoS bandwidth limit rule",
        "Allow to configure QoS bandwidth limit rule with specific direction: ingress or egress",
    ),
    ("qos-fip", "Floating IP QoS", "The floating IP Quality of Service extension"),
    ("subnet_allocation", "Subnet Allocation", "Enables allocation of subnets from a subnet pool"),
    (
        "router",
        "Neutron L3 Router",
        "Router abstraction for basic L3 forwarding between L2 "
        "Neutron networks and access to external networks via a NAT gateway.",
    ),
    (
        "ext-gw-mode",
        "Neutron L3 Configurable external gateway mode",
        "Extension of the router abstraction for specifying whether SNAT should occur on the "
        "external gateway",
    ),
    ("extraroute", "Neutron Extra Route", "Extra routes configuration for L3 router"),
    (
        "floating-ip-port-forwarding",
        "Floating IP Port Forwarding",
        "Provides port forwarding for floating IPs",
    ),
    (
        "floating-ip-port-forwarding-port-ranges",
        "Floating IP Port Forwarding support port ranges",
        "Allows port ranges in floating IP port forwardings",
    ),
    (
        "project-id",
        "project_id field enabled",
        "Extension that indicates that project_id field is enabled.",
    ),
    (
        "revision-if-match",
        "If-Match constraints based on revision_number",
        "Extension indicating that If-Match based on revision_number is supported.",
    ),
    ("pagination", "Pagination support", "Extension that indicates that pagination is enabled."),
    ("sorting", "Sorting support", "Extension that indicates that sorting is enabled."),
    ("dns-integration", "DNS Integration", "Provides integration with DNS."),
    (
        "stateful-security-group",
        "Stateful security group",
        "Indicates if the security group is stateful or not",
    ),
    (
        "empty-string-filtering",
        "Empty String Filtering Extension",
        "Allow filtering by attributes with empty string value",
    ),
)

ALL: list[dict[str, Any]] = [
    {"alias": alias, "name": name, "description": description, "updated": UPDATED, "links": []}
    for alias, name, description in _IMPLEMENTED
]
