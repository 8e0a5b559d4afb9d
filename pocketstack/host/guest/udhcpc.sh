#!/bin/sh
# udhcpc's hook: applies the lease it got (address, routers, DNS servers).
case "$1" in
    deconfig)
        ip -4 addr flush dev "$interface"
        ;;
    bound|renew)
        ip -4 addr flush dev "$interface"
        ip addr add "$ip/${mask:-24}" dev "$interface"
        [ -n "$mtu" ] && ip link set "$interface" mtu "$mtu"
        if [ -n "$staticroutes" ]; then
            # Classless routes (option 121: the metadata address, the default route)
            # replace the router option, as RFC 3442 says.
            set -- $staticroutes
            while [ $# -ge 2 ]; do
                ip route replace "$1" via "$2" dev "$interface"
                shift 2
            done
        else
            for router in $router; do
                ip route replace default via "$router" dev "$interface"
                break
            done
        fi
        : > /etc/resolv.conf
        [ -n "$domain" ] && echo "search $domain" >> /etc/resolv.conf
        for server in $dns; do echo "nameserver $server" >> /etc/resolv.conf; done
        ;;
esac
exit 0
