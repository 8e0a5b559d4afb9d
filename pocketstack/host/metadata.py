"""Design note (not built yet): the metadata service at 169.254.169.254 for servers.

Servers fetch `http://169.254.169.254/openstack/latest/meta_data.json` (and
the EC2-style `/latest/meta-data/`) for their name, keys and user data. On
the `linuxbridge` data plane this is meant to work as follows.

Where it listens: in each network's DHCP namespace (`qdhcp-<network id>`),
not the router's, so isolated networks without a router get metadata too
and one mechanism serves every network. The agent adds 169.254.169.254/32
(and fe80::a9fe:a9fe/128 for IPv6) as extra addresses of the DHCP port
`ns-…` with `netdev.set_addresses`, and dnsmasq hands IPv4 clients a host
route "169.254.169.254/32 via <DHCP port IP>" (option 121, `Subnet.
host_routes`, which also repeats the default route so clients keep it).
No NAT is needed; security groups see an ordinary egress flow to port 80.

What listens: one small asyncio HTTP proxy inside the network agent's
process, not a process per network. A socket belongs to the namespace it
was created in, so the agent opens a listening socket per DHCP namespace
(from a short-lived thread that enters the namespace with setns, makes the
socket and leaves) and serves them all from one event loop. A request is
identified by (the namespace its socket is in → network id, the client's
source address) → the port with that fixed IP → its device owner, the
server. Anti-spoofing (`firewall`) makes the source address trustworthy.

What it answers: the proxy asks the compute service for that server's
metadata, in process when all-in-one, and over the agent's control-plane
interface when scale-out (with the server id it resolved, never one the
client claims). It adds nothing the client could forge and answers 404 for
addresses that map to no server.

Lifecycle: level-based like the rest — for every DHCP namespace on the host
there is one listening socket; sockets of namespaces that are gone are
closed on each resync.
"""
