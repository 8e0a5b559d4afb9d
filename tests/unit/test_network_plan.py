"""The network agent's pure plans: DHCP ports, what each network gets on a host, port status."""

from __future__ import annotations

from pocketstack.host import netdev
from pocketstack.host.firewall import Rule
from pocketstack.network import agent
from pocketstack.network.agent import Facts, NetworkFacts, PortFacts, RuleFacts, SubnetFacts

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
    assert setup.dhcp.cidrs == ("100.64.1.2/24",)
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
    assert set(by_tap) == {netdev.tap_name("porta"), netdev.tap_name("portb")}
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
