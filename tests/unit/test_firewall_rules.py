"""The iptables-restore text the firewall generates: security groups and router NAT.

Pure functions; whether iptables accepts the text is checked on a real
namespace in tests/real/test_dataplane.py.
"""

from __future__ import annotations

import pytest

from pocketstack.host import firewall
from pocketstack.host.firewall import (
    AddressPair,
    FloatingIp,
    PortFilter,
    PortForward,
    RouterNat,
    Rule,
)

MAC = "fa:16:3e:00:00:01"
TAP = "tapaaaaaaaa-aa"


def port(*rules: Rule, **changes: object) -> PortFilter:
    values: dict[str, object] = {
        "tap": TAP,
        "mac": MAC,
        "ips": ("100.64.0.5", "fd00::5"),
        "rules": rules,
    }
    values.update(changes)
    return PortFilter(**values)  # type: ignore[arg-type]


def chain(text: str, name: str) -> list[str]:
    """The rules of one chain, without the "-A name" prefix, in order."""
    prefix = f"-A {name} "
    return [line[len(prefix) :] for line in text.splitlines() if line.startswith(prefix)]


KNOWN = [
    "-m physdev --physdev-in tap+ --physdev-is-bridged -j ps-known-in",
    "-m physdev --physdev-out tap+ --physdev-is-bridged -j ps-known-out",
    "-j ACCEPT",
]


def test_no_ports_pass_no_port_device_and_other_devices_pass() -> None:
    text = firewall.render_port_filters([], "IPv4")
    assert text.splitlines()[0] == "*filter" and text.endswith("COMMIT\n")
    assert chain(text, "FORWARD") == ["-m physdev --physdev-is-bridged -j ps-sg"]
    assert chain(text, "ps-sg") == KNOWN
    assert chain(text, "ps-known-in") == chain(text, "ps-known-out") == ["-j DROP"]
    assert "ps-i-" not in text


def test_a_port_gets_dispatch_ingress_egress_and_spoof_chains() -> None:
    text = firewall.render_port_filters([port()], "IPv4")
    for name in (f"ps-i-{TAP}", f"ps-o-{TAP}", f"ps-s-{TAP}"):
        assert f":{name} - [0:0]" in text
    assert chain(text, "ps-sg") == [
        f"-m physdev --physdev-out {TAP} --physdev-is-bridged -j ps-i-{TAP}",
        f"-m physdev --physdev-in {TAP} --physdev-is-bridged -j ps-o-{TAP}",
        *KNOWN,
    ]
    assert chain(text, "ps-known-in") == [f"-m physdev --physdev-in {TAP} -j RETURN", "-j DROP"]
    ingress = chain(text, f"ps-i-{TAP}")
    assert ingress[0] == "-m conntrack --ctstate RELATED,ESTABLISHED -j RETURN"
    assert "-p udp -m udp --sport 67 --dport 68 -j RETURN" in ingress  # DHCP replies
    assert ingress[-2:] == ["-m conntrack --ctstate INVALID -j DROP", "-j DROP"]
    egress = chain(text, f"ps-o-{TAP}")
    # A DHCP discover comes from no address, before the spoofing check.
    assert egress[0].startswith("-s 0.0.0.0/32 -d 255.255.255.255/32 -p udp")
    assert egress[1] == f"-j ps-s-{TAP}"
    assert "-p udp -m udp --sport 67 --dport 68 -j DROP" in egress  # no DHCP server
    assert egress[-1] == "-j DROP"
    assert chain(text, f"ps-s-{TAP}") == [
        f"-s 100.64.0.5/32 -m mac --mac-source {MAC} -j RETURN",
        "-j DROP",
    ]


def test_rules_become_matches_in_their_direction_and_family() -> None:
    rules = (
        Rule("ingress", "IPv4", "tcp", 22, 22, "10.0.0.0/8"),
        Rule("ingress", "IPv4", "udp", 1000, 2000),
        Rule("ingress", "IPv4", "icmp", 8, 0),
        Rule("ingress", "IPv4", "icmp"),
        Rule("ingress", "IPv4", "6", 80, 80, "0.0.0.0/0"),
        Rule("ingress", "IPv4", "sctp", 9, None),
        Rule("ingress", "IPv4", "47"),
        Rule("egress", "IPv4", None, None, None, "198.18.0.0/15"),
        Rule("egress", "IPv4", "any"),
        Rule("ingress", "IPv6", "icmp", 128, None),
        Rule("ingress", "IPv6", "tcp", 443, 443, "fd00::/8"),
        Rule("egress", "IPv6"),
    )
    v4 = firewall.render_port_filters([port(*rules)], "IPv4")
    ingress = chain(v4, f"ps-i-{TAP}")
    allowed = ingress[ingress.index("-m conntrack --ctstate INVALID -j DROP") + 1 : -1]
    assert allowed == [
        "-s 10.0.0.0/8 -p tcp -m tcp --dport 22 -j RETURN",
        "-p udp -m udp --dport 1000:2000 -j RETURN",
        "-p icmp -m icmp --icmp-type 8/0 -j RETURN",
        "-p icmp -j RETURN",
        "-p tcp -m tcp --dport 80 -j RETURN",
        "-p sctp -m sctp --dport 9 -j RETURN",
        "-p 47 -j RETURN",
    ]
    egress = chain(v4, f"ps-o-{TAP}")
    assert egress[-3:] == ["-d 198.18.0.0/15 -j RETURN", "-j RETURN", "-j DROP"]

    v6 = firewall.render_port_filters([port(*rules)], "IPv6")
    ingress6 = chain(v6, f"ps-i-{TAP}")
    allowed6 = ingress6[ingress6.index("-m conntrack --ctstate INVALID -j DROP") + 1 : -1]
    assert allowed6 == [
        "-p ipv6-icmp -m icmp6 --icmpv6-type 128 -j RETURN",
        "-s fd00::/8 -p tcp -m tcp --dport 443 -j RETURN",
    ]
    assert chain(v6, f"ps-o-{TAP}")[-2:] == ["-j RETURN", "-j DROP"]


def test_ipv6_lets_neighbour_discovery_through_and_no_rogue_router_out() -> None:
    v6 = firewall.render_port_filters([port()], "IPv6")
    ingress = chain(v6, f"ps-i-{TAP}")
    for kind in (134, 135, 136):
        assert f"-p ipv6-icmp -m icmp6 --icmpv6-type {kind} -j RETURN" in ingress
    assert "-p udp -m udp --sport 547 --dport 546 -j RETURN" in ingress
    egress = chain(v6, f"ps-o-{TAP}")
    assert egress.index(f"-j ps-s-{TAP}") < egress.index(
        "-p ipv6-icmp -m icmp6 --icmpv6-type 134 -j DROP"
    )
    assert "-s ::/128 -p ipv6-icmp -m icmp6 --icmpv6-type 135 -j RETURN" in egress  # DAD


def test_spoofing_allows_own_addresses_pairs_and_the_link_local() -> None:
    pairs = (
        AddressPair("100.64.0.0/28"),
        AddressPair("100.64.9.9", "fa:16:3e:00:00:02"),
        AddressPair("fd00::99", "FA:16:3E:00:00:03"),
    )
    v4 = firewall.render_port_filters([port(allowed_pairs=pairs)], "IPv4")
    assert chain(v4, f"ps-s-{TAP}") == [
        f"-s 100.64.0.5/32 -m mac --mac-source {MAC} -j RETURN",
        f"-s 100.64.0.0/28 -m mac --mac-source {MAC} -j RETURN",
        "-s 100.64.9.9/32 -m mac --mac-source fa:16:3e:00:00:02 -j RETURN",
        "-j DROP",
    ]
    v6 = firewall.render_port_filters([port(allowed_pairs=pairs)], "IPv6")
    assert chain(v6, f"ps-s-{TAP}") == [
        f"-s fd00::5/128 -m mac --mac-source {MAC} -j RETURN",
        "-s fd00::99/128 -m mac --mac-source fa:16:3e:00:00:03 -j RETURN",
        f"-s fe80::f816:3eff:fe00:1/128 -m mac --mac-source {MAC} -j RETURN",
        # A pair's own MAC needs its link-local address for neighbour discovery.
        "-s fe80::f816:3eff:fe00:2/128 -m mac --mac-source fa:16:3e:00:00:02 -j RETURN",
        "-s fe80::f816:3eff:fe00:3/128 -m mac --mac-source fa:16:3e:00:00:03 -j RETURN",
        "-j DROP",
    ]


def test_link_local_is_eui64_of_the_mac() -> None:
    assert firewall.link_local("fa:16:3e:12:34:56") == "fe80::f816:3eff:fe12:3456"
    assert firewall.link_local("00:00:00:00:00:01") == "fe80::200:ff:fe00:1"


def test_ports_without_port_security_pass_unfiltered_and_output_is_stable() -> None:
    other = port(tap="tapbbbbbbbb-bb", port_security=False)
    text = firewall.render_port_filters([port(), other], "IPv4")
    assert "ps-i-tapbbbbbbbb-bb" not in text and "ps-o-tapbbbbbbbb-bb" not in text
    assert "-m physdev --physdev-out tapbbbbbbbb-bb -j RETURN" in chain(text, "ps-known-out")
    second = port(tap="tap00000000-00")
    forward = firewall.render_port_filters([port(), second], "IPv4")
    assert forward == firewall.render_port_filters([second, port()], "IPv4")


def test_chain_names_fit_iptables() -> None:
    text = firewall.render_port_filters([port(tap="tap0123456789a")], "IPv4")
    names = [line[1:].split()[0] for line in text.splitlines() if line.startswith(":")]
    assert max(len(n) for n in names) <= 28
    assert "fwd" not in names  # reserved by nft


@pytest.mark.parametrize(
    "bad",
    [
        [port(), port()],
        [port(Rule("ingress", "IPv4", "tcp", 22, 22, "fd00::/8"))],
        [port(Rule("ingress", "IPv4", "icmpv6"))],
    ],
)
def test_bad_filters_are_refused(bad: list[PortFilter]) -> None:
    with pytest.raises(ValueError):
        firewall.render_port_filters(bad, "IPv4")


def test_link_spoofing_table_names_each_filtered_ports_macs_and_ipv4_sources() -> None:
    pairs = (AddressPair("100.64.9.0/28", "fa:16:3e:00:00:02"), AddressPair("fd00::9"))
    unfiltered = port(tap="tapbbbbbbbb-bb", port_security=False)
    text = firewall.render_link_spoofing([port(allowed_pairs=pairs), unfiltered])
    lines = text.splitlines()
    # Made sure to exist, then deleted and made again: one transaction, any start state.
    assert lines[:2] == ["table bridge pocketstack-spoof", "delete table bridge pocketstack-spoof"]
    rules = [line.strip() for line in lines if line.strip().startswith("iifname")]
    macs = "{ fa:16:3e:00:00:01, fa:16:3e:00:00:02 }"
    assert rules == [
        f'iifname "{TAP}" ether saddr != {macs} drop',
        f'iifname "{TAP}" ether type arp arp saddr ether != {macs} drop',
        f'iifname "{TAP}" ether type arp arp saddr ip != '
        "{ 0.0.0.0, 100.64.0.5/32, 100.64.9.0/28 } drop",
    ]
    assert firewall.render_link_spoofing([unfiltered]).splitlines() == lines[:2]


# --- router NAT -------------------------------------------------------------------------


def test_no_nat_leaves_only_the_hooks() -> None:
    text = firewall.render_router_nat(None)
    assert text.splitlines()[0] == "*nat" and text.endswith("COMMIT\n")
    assert chain(text, "PREROUTING") == ["-j ps-dnat"]
    assert chain(text, "OUTPUT") == ["-j ps-dnat"]
    assert chain(text, "POSTROUTING") == ["-j ps-snat"]
    assert chain(text, "ps-dnat") == chain(text, "ps-snat") == []


def test_router_nat_snat_floating_ips_forwards_and_hairpin() -> None:
    nat = RouterNat(
        gateway_if="qg-1234567890a",
        gateway_ip="198.18.0.10",
        snat_cidrs=("100.64.0.0/24", "100.64.1.7/24"),
        floating=(FloatingIp("198.18.0.20", "100.64.0.5"),),
        forwards=(
            PortForward("tcp", "198.18.0.21", 8080, 8080, "100.64.0.6", 80, 80),
            PortForward("udp", "198.18.0.21", 5000, 5009, "100.64.0.6", 6000, 6009),
            PortForward("tcp", "198.18.0.21", 9000, 9009, "100.64.0.6", 22, 22),
        ),
    )
    text = firewall.render_router_nat(nat)
    assert chain(text, "ps-dnat") == [
        "-d 198.18.0.21/32 -p tcp -m tcp --dport 8080 -j DNAT --to-destination 100.64.0.6:80",
        "-d 198.18.0.21/32 -p udp -m udp --dport 5000:5009 "
        "-j DNAT --to-destination 100.64.0.6:6000-6009/5000",
        "-d 198.18.0.21/32 -p tcp -m tcp --dport 9000:9009 -j DNAT --to-destination 100.64.0.6:22",
        "-d 198.18.0.20/32 -j DNAT --to-destination 100.64.0.5",
    ]
    assert chain(text, "ps-snat") == [
        "-s 100.64.0.5/32 -o qg-1234567890a -j SNAT --to-source 198.18.0.20",
        "-s 100.64.0.0/24 -o qg-1234567890a -j SNAT --to-source 198.18.0.10",
        "-s 100.64.1.0/24 -o qg-1234567890a -j SNAT --to-source 198.18.0.10",
        "-s 100.64.0.0/24 ! -o qg-1234567890a -m conntrack --ctstate DNAT -j MASQUERADE",
        "-s 100.64.1.0/24 ! -o qg-1234567890a -m conntrack --ctstate DNAT -j MASQUERADE",
    ]


@pytest.mark.parametrize(
    ("ports", "reason"),
    [
        ((80, 80, 80, 81), "one external port"),
        ((80, 89, 80, 85), "differ in size"),
        ((90, 80, 80, 80), "ends before"),
    ],
)
def test_bad_forwards_are_refused(ports: tuple[int, int, int, int], reason: str) -> None:
    forward = PortForward("tcp", "198.18.0.21", ports[0], ports[1], "100.64.0.6", *ports[2:])
    with pytest.raises(ValueError, match=reason):
        firewall.render_router_nat(RouterNat("qg-x", "198.18.0.10", forwards=(forward,)))
