#!/bin/sh
# PID 1 of a pocketstack guest, in namespaces or in a VM: brings up the network
# (DHCP on every interface), runs the user data, serves its hostname over HTTP on
# port 80 and prints the boot marker on the console. SIGTERM stops it cleanly.
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
cd /

stop() {
    echo "pocketstack guest $(hostname) stopping"
    kill -TERM -1 2>/dev/null
    exit 0
}
trap stop TERM INT

[ -e /proc/self ] || mount -t proc proc /proc
[ -s /pocketstack/hostname ] && hostname "$(cat /pocketstack/hostname)"
ip link set lo up

for path in /sys/class/net/*; do
    nic=${path##*/}
    [ "$nic" = lo ] && continue
    ip link set "$nic" up
    udhcpc -i "$nic" -s /usr/share/udhcpc/default.script -O staticroutes -t 10 -T 1 -A 2 -b -q >/dev/null 2>&1
done

mkdir -p /var/www
hostname > /var/www/index.html
httpd -p 80 -h /var/www

# Once per root filesystem, as cloud-init runs user scripts once per instance.
if [ -s /pocketstack/user-data ] && [ ! -e /var/lib/pocketstack/user-data.done ]; then
    echo "pocketstack guest $(hostname): running user data"
    mkdir -p /var/lib/pocketstack
    : > /var/lib/pocketstack/user-data.done
    chmod +x /pocketstack/user-data
    if head -c 2 /pocketstack/user-data | grep -q '#!'; then
        /pocketstack/user-data &
    else
        sh /pocketstack/user-data &
    fi
fi

echo "pocketstack guest booted: $(hostname)"
while :; do
    sleep 3600 &
    wait $!
done
