#!/usr/bin/env bash
# Installs the Debian packages pocketstack's real drivers use; quiet when all are present.
# Run as root (make install calls it only then). Safe to re-run.
set -euo pipefail

PACKAGES=(
    python3-venv python3-dev build-essential
    iproute2 iptables nftables dnsmasq-base haproxy busybox-static socat
    qemu-utils qemu-system-x86
    postgresql mariadb-server
)

missing=()
for pkg in "${PACKAGES[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
        missing+=("$pkg")
    fi
done
[ ${#missing[@]} -eq 0 ] && exit 0

echo ">> installing Debian packages: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo ">> Debian packages installed"
