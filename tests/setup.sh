#!/usr/bin/env bash
# Installs what the lab, the tests and the benchmarks need on a fresh
# Debian/Ubuntu machine (idempotent; quiet when everything is present).
set -euo pipefail

need=()
have() { command -v "$1" >/dev/null 2>&1; }
have ip       || need+=(iproute2)
have ethtool  || need+=(ethtool)
have nft      || need+=(nftables)
have ping     || need+=(iputils-ping)
have iperf3   || need+=(iperf3)
have tcpdump  || need+=(tcpdump)
have sysctl   || need+=(procps)
have python3  || need+=(python3)
have conntrack || need+=(conntrack)
# The reference rows of bench failover and bench survival (also in test mode).
have keepalived || need+=(keepalived)
have conntrackd || need+=(conntrackd)

if ((${#need[@]})); then
    if [[ $(id -u) -ne 0 ]]; then
        echo "tests/setup.sh: missing ${need[*]}; run as root (sudo) to install them" >&2
        exit 1
    fi
    echo "tests/setup.sh: installing ${need[*]}" >&2
    export DEBIAN_FRONTEND=noninteractive
    # keepalived and conntrackd ship services: the lab runs its own instances
    # in its namespaces, so keep apt from starting them on the host (Debian's
    # policy-rc.d: 101 = action forbidden), unless the host already has a policy.
    if [[ ! -e /usr/sbin/policy-rc.d ]]; then
        printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
        chmod 755 /usr/sbin/policy-rc.d
        trap 'rm -f /usr/sbin/policy-rc.d' EXIT
    fi
    apt-get -o DPkg::Lock::Timeout=600 update -qq
    apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

if ! command -v cargo >/dev/null 2>&1; then
    echo "tests/setup.sh: cargo not found; install Rust (https://rustup.rs) first" >&2
    exit 1
fi
