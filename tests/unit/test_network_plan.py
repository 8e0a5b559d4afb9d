"""The network agent's pure plans: DHCP ports, what each network gets on a host, port status."""

from __future__ import annotations

from pocketstack.host import netdev, qos
from pocketstack.host.firewall import FloatingIp, PortForward, RouterNat, Rule
from pocketstack.network import agent, facts, l3_plan
from pocketstack.network.drivers import PortLimits
from pocketstack.network.facts import Facts, NetworkFacts, PortFacts, RuleFacts, SubnetFacts

HOST = "host-1"
V4 = SubnetFacts("sub4", "100.64.1.0/24", 4, "100.64.1.1", True, ("198.18.0.53",))
V4_OFF = SubnetFacts("sub4b", "100.64.2.0/24", 4, None, False)
NET = NetworkFacts("net1", "proj", 1450, "example.test.", subnets=(V4, V4_OFF))
DHCP = PortFacts(
    "dhcpport",
    "net1",
    "fa:16:3e:00:00:01",
    (("sub4", "100.64.1.2"),),
    device_owner="network:dhcp",
    host=HOST,
    port_security=False,
)
VM_A = PortFacts(
    "porta",
    "net1",
    "fa:16:3e:00:00:0a",
    (("sub4", "100.64.1.10"),),
    device_owner="compute:nova",
    host=HOST,
    dns_name="vm-a",
    security_groups=("web",),
    status="DOWN",
)
VM_B = PortFacts(
    "portb",
    "net1",
    "fa:16:3e:00:00:0b",
    (("sub4", "100.64.1.11"),),
    device_owner="compute:nova",
    host=HOST,
    security_groups=("default",),
    status="ACTIVE",
)
RULES = (
    RuleFacts("web", "ingress", "IPv4", "tcp", 80, 80),
    RuleFacts("web", "ingress", "IPv4", None, remote_group_id="default"),
    RuleFacts("web", "ingress", "IPv6", None, remote_group_id="default"),
    RuleFacts("default", "egress", "IPv4"),
)


def test_dhcp_ports_are_made_readdressed_and_removed_to_match_the_subnets() -> None:
    bare = Facts((NET,), (), ())
    assert agent.dhcp_port_changes(HOST, bare) == [
        agent.DhcpPortChange("net1", "proj", None, ("sub4",))
    ]
    assert agent.dhcp_port_changes(HOST, Facts((NET,), (DHCP,), ())) == []
    second = SubnetFacts("sub6", "fd00::/64", 6, None, True)
    grown = NetworkFacts("net1", "proj", 1450, subnets=(V4, second))
    assert agent.dhcp_port_changes(HOST, Facts((grown,), (DHCP,), ())) == [
        agent.DhcpPortChange(
            "net1", "proj", "dhcpport", ("sub4", "sub6"), (("sub4", "100.64.1.2"),)
        )
    ]
    no_dhcp = NetworkFacts("net1", "proj", 1450, subnets=(V4_OFF,))
    assert agent.dhcp_port_changes(HOST, Facts((no_dhcp,), (DHCP,), ())) == [
        agent.DhcpPortChange("net1", "proj", "dhcpport", ())
    ]
    external = NetworkFacts("net1", "proj", 1500, external=True, subnets=(V4,))
    assert agent.dhcp_port_changes(HOST, Facts((external,), (), ())) == []


def test_plan_serves_dhcp_names_and_filters_with_remote_groups_resolved() -> None:
    facts = Facts((NET,), (DHCP, VM_A, VM_B), RULES)
    plan = agent.plan(HOST, facts, made={"net1", "gone"})
    assert plan.remove == ("gone",)
    (setup,) = plan.setups
    assert (setup.network_id, setup.mtu) == ("net1", 1450)
    assert setup.dhcp is not None
    # The DHCP port serves metadata too, and its subnet's clients get a route to it.
    assert setup.dhcp.cidrs == ("100.64.1.2/24", "169.254.169.254/32")
    assert setup.dhcp.config.subnets[0].host_routes == (("169.254.169.254/32", "100.64.1.2"),)
    config = setup.dhcp.config
    assert config.interface == netdev.dhcp_port_name("dhcpport")
    assert config.domain == "example.test"
    assert [s.subnet_id for s in config.subnets] == ["sub4"]
    assert config.subnets[0].dns_servers == ("198.18.0.53",)
    assert [(h.mac, h.ips, h.hostname) for h in config.hosts] == [
        ("fa:16:3e:00:00:0a", ("100.64.1.10",), "vm-a"),
        ("fa:16:3e:00:00:0b", ("100.64.1.11",), "host-100-64-1-11"),
    ]
    by_tap = {f.tap: f for f in setup.filters}
    # Servers' ports are filtered; the DHCP port is known to the bridge and unfiltered.
    assert set(by_tap) == {netdev.tap_name(p) for p in ("porta", "portb", "dhcpport")}
    assert by_tap[netdev.tap_name("dhcpport")].port_security is False
    assert by_tap[netdev.tap_name("porta")].rules == (
        Rule("ingress", "IPv4", "tcp", 80, 80),
        Rule("ingress", "IPv4", None, remote_cidr="100.64.1.11/32"),
    )
    assert by_tap[netdev.tap_name("portb")].rules == (Rule("egress", "IPv4"),)


def test_a_network_with_nothing_here_is_not_set_up_and_what_was_made_goes() -> None:
    quiet = NetworkFacts("net2", "proj", 1500, subnets=(V4_OFF,))
    elsewhere = PortFacts("portc", "net2", "fa:16:3e:00:00:0c", host="other-host")
    plan = agent.plan(HOST, Facts((quiet,), (elsewhere,), ()), made={"net2"})
    assert plan == agent.Plan((), ("net2",))
    bound = PortFacts("portd", "net2", "fa:16:3e:00:00:0d", host=HOST)
    (setup,) = agent.plan(HOST, Facts((quiet,), (bound,), ()), made=set()).setups
    assert setup.dhcp is None
    assert [f.tap for f in setup.filters] == [netdev.tap_name("portd")]


def test_ports_are_active_only_while_plugged_and_up() -> None:
    down_admin = PortFacts(
        "porte", "net1", "fa:16:3e:00:00:0e", host=HOST, admin_up=False, status="ACTIVE"
    )
    facts = Facts((NET,), (DHCP, VM_A, VM_B, down_admin), ())
    plugged = {"net1": {netdev.tap_name("porta"), netdev.tap_name("porte")}}
    assert agent.port_statuses(HOST, facts, plugged) == {
        "porta": "ACTIVE",
        "portb": "DOWN",
        "porte": "DOWN",
    }


# Routers, floating IPs, QoS -----------------------------------------------------------------

EXT_SUBNET = SubnetFacts("extsub", "198.18.0.0/24", 4, "198.18.0.1", False)
EXT = NetworkFacts("ext", "admin", 1500, external=True, subnets=(EXT_SUBNET,))
V6 = SubnetFacts("sub6", "fd00:1::/64", 6, "fd00:1::1", True, ipv6_address_mode="slaac")
TENANT = NetworkFacts("net1", "proj", 1450, subnets=(V4, V6))
GATEWAY = PortFacts("gwport", "ext", "fa:16:3e:00:01:01", (("extsub", "198.18.0.10"),),
                    device_owner="network:router_gateway", device_id="r1")  # fmt: skip
INTERFACE = PortFacts("ifport", "net1", "fa:16:3e:00:01:02",
                      (("sub4", "100.64.1.1"), ("sub6", "fd00:1::1")),
                      device_owner="network:router_interface", device_id="r1")  # fmt: skip
ROUTER = facts.RouterFacts("r1", routes=(("100.64.9.0/24", "100.64.1.254"),))
LIMITED = facts.QosFacts("slow", egress=facts.BandwidthLimit(10_000), ingress=None)
FIP = facts.FloatingFacts(
    "fip1", "198.18.0.20", "r1", "100.64.1.10", port_id="porta", qos_policy_id="slow"
)
FORWARDS = facts.FloatingFacts(
    "fip2", "198.18.0.21", "r1",
    forwards=(facts.ForwardFacts("tcp", "100.64.1.11", (80, 80), (8080, 8080)),
              facts.ForwardFacts("udp", "100.64.1.11", (6000, 6009), (5000, 5009))),
)  # fmt: skip


def l3_facts(*extra: PortFacts, router: facts.RouterFacts = ROUTER) -> Facts:
    return Facts(
        (TENANT, EXT), (DHCP, VM_A, VM_B, GATEWAY, INTERFACE, *extra), (), (router,),
        (FIP, FORWARDS), (LIMITED,),
    )  # fmt: skip


def test_a_router_gets_its_legs_routes_nat_and_floating_ip_limits() -> None:
    (setup,) = l3_plan.router_setups(l3_facts())
    assert setup.router_id == "r1"
    (leg,) = setup.interfaces
    assert (leg.port_id, leg.network_id, leg.mtu) == ("ifport", "net1", 1450)
    assert leg.cidrs == ("100.64.1.1/24", "fd00:1::1/64")
    assert setup.gateway is not None
    # The gateway leg answers for the router's floating IPs too.
    assert setup.gateway.cidrs == ("198.18.0.10/24", "198.18.0.20/32", "198.18.0.21/32")
    qg = netdev.gateway_port_name("gwport")
    assert setup.routes == (
        netdev.Route("default", "198.18.0.1", qg),
        netdev.Route("100.64.9.0/24", "100.64.1.254"),
    )
    assert setup.nat == RouterNat(
        qg, "198.18.0.10", ("100.64.1.0/24",), (FloatingIp("198.18.0.20", "100.64.1.10"),),
        (PortForward("tcp", "198.18.0.21", 8080, 8080, "100.64.1.11", 80, 80),
         PortForward("udp", "198.18.0.21", 5000, 5009, "100.64.1.11", 6000, 6009)),
    )  # fmt: skip
    assert setup.floating_limits == (
        ("198.18.0.20", qos.FloatingIpLimits(egress=qos.Limit(10_000), ingress=None)),
    )


def test_without_snat_only_floating_ips_are_translated_and_without_gateway_nothing() -> None:
    no_snat = facts.RouterFacts("r1", enable_snat=False)
    (setup,) = l3_plan.router_setups(l3_facts(router=no_snat))
    assert setup.nat is not None and setup.nat.snat_cidrs == ()
    assert [f.floating_ip for f in setup.nat.floating] == ["198.18.0.20"]
    bare = Facts((TENANT, EXT), (INTERFACE,), (), (facts.RouterFacts("r1"),))
    (setup,) = l3_plan.router_setups(bare)
    assert (setup.gateway, setup.nat, setup.routes) == (None, None, ())
    down = Facts((TENANT, EXT), (INTERFACE,), (), (facts.RouterFacts("r1", admin_up=False),))
    assert l3_plan.router_setups(down) == ()


def test_the_plan_sets_up_external_networks_routers_and_port_limits() -> None:
    limited = PortFacts("portq", "net1", "fa:16:3e:00:00:11", (("sub4", "100.64.1.12"),),
                        device_owner="compute:nova", host=HOST, qos_policy_id="slow")  # fmt: skip
    plan = agent.plan(HOST, l3_facts(limited), made={"gone"}, routers_made={"r1", "r0"})
    by_id = {s.network_id: s for s in plan.setups}
    assert set(by_id) == {"net1", "ext"}
    assert by_id["ext"].host_leg == ("198.18.0.1/24",)
    assert by_id["net1"].host_leg is None
    assert {(lim.tap, lim.egress, lim.ingress) for lim in by_id["net1"].limits} == {
        (netdev.tap_name("porta"), None, None),
        (netdev.tap_name("portb"), None, None),
        (netdev.tap_name("portq"), qos.Limit(10_000), None),
    }
    assert [r.router_id for r in plan.routers] == ["r1"]
    assert (plan.remove, plan.remove_routers) == (("gone",), ("r0",))


def test_a_network_takes_its_policy_for_ports_without_one() -> None:
    network = NetworkFacts("net1", "proj", 1450, subnets=(V4,), qos_policy_id="slow")
    own = facts.QosFacts("fast", ingress=facts.BandwidthLimit(50_000, 5_000))
    port = PortFacts("portf", "net1", "fa:16:3e:00:00:12", qos_policy_id="fast")
    policies = {"slow": LIMITED, "fast": own}
    assert agent.port_limits(port, network, policies) == PortLimits(
        netdev.tap_name("portf"), None, qos.Limit(50_000, 5_000)
    )
    assert agent.port_limits(VM_A, network, policies).egress == qos.Limit(10_000)


def test_metadata_is_answered_for_servers_ports_by_network_and_fixed_address() -> None:
    server_port = PortFacts("porta", "net1", "fa:16:3e:00:00:0a", (("sub4", "100.64.1.10"),),
                            device_owner="compute:nova", device_id="server-a")  # fmt: skip
    askers = agent.metadata_askers(l3_facts(server_port))
    server_id, addresses = askers[("net1", "100.64.1.10")]
    assert server_id == "server-a"
    assert (addresses.port_id, addresses.mtu, addresses.floating_ipv4) == (
        "porta",
        1450,
        "198.18.0.20",
    )
    # Router legs, DHCP ports and ports without a device ask for nothing.
    assert ("net1", "100.64.1.1") not in askers and ("net1", "100.64.1.2") not in askers
