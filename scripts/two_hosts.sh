#!/usr/bin/env bash
# minidl data-parallel training across two simulated hosts: two Linux network namespaces
# (minidl-h0 at 10.77.0.1/24, minidl-h1 at 10.77.0.2/24) joined by a veth pair, each with its
# own loopback and hostname, one MPI rank in each, MPI over TCP on the veth only
# (scripts/netns_lib.sh has the set-up and the launch). Trains EPOCHS (default 1) of resnet20
# with `--limit-train 2560 --limit-test 1000 --threads 1` unless the extra flags set them;
# every rank first prints `rank R: host H namespace NS address A cpu C`, and the script prints
# the bytes that crossed the veth. The namespaces are deleted on exit (trap); a run left
# behind by a kill -9 is cleaned up by the next run.
#
# Usage: scripts/two_hosts.sh [EPOCHS] [-- extra `minidl train` flags]     (as root)
#   e.g. scripts/two_hosts.sh 1 -- --limit-train 256 --bn-sync global
# Environment: MINIDL (binary, default build/minidl), MINIDL_DATA (CIFAR-10 binary folder,
# default ../shared/data/cifar-10-batches-bin), OUT (run directory, default runs/two_hosts),
# MINIDL_NETNS / MINIDL_NETNS_NET (namespace names and subnet: scripts/netns_lib.sh).
#
# The same job on a real cluster of two hosts (say node1 and node2, eth0 on each, passwordless
# ssh from node1 to node2, the same minidl build and the same data path on both):
#
#   printf 'node1 slots=1\nnode2 slots=1\n' > hosts
#   mpirun -np 2 --hostfile hosts --map-by node --bind-to none \
#     --mca btl tcp,self --mca btl_tcp_if_include eth0 --mca oob_tcp_if_include eth0 \
#     build/minidl train --data /data/cifar-10-batches-bin --epochs 1 --threads T --out runs/x
#
# Here the hostfile names the two veth addresses, and --mca plm_rsh_agent replaces ssh by a
# generated script that enters the namespace of the address (ip netns exec) instead of logging
# in; everything else is the same command. On real hosts, --bind-to none (or --map-by
# ppr:1:node:pe=T) lets the rank's T OpenMP threads use T cores: OpenMPI's default for 2
# processes binds each to one core. As root add --allow-run-as-root. Only rank 0 writes the run
# directory (on node1).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/netns_lib.sh

epochs=1
if [ $# -gt 0 ] && [ "$1" != "--" ]; then
  epochs="$1"
  shift
fi
if [ $# -gt 0 ]; then
  if [ "$1" != "--" ]; then
    echo "usage: scripts/two_hosts.sh [EPOCHS] [-- extra train flags]" >&2
    exit 2
  fi
  shift
fi
extra=("$@")

bin="$(realpath "${MINIDL:-build/minidl}")"
data="${MINIDL_DATA:-../shared/data/cifar-10-batches-bin}"
out="${OUT:-runs/two_hosts}"
[ -x "$bin" ] || { echo "two_hosts.sh: no binary $bin (build first)" >&2; exit 1; }

# defaults, each unless the extra flags give it
has() {
  local f
  for f in "${extra[@]}"; do [ "$f" = "$1" ] || [[ "$f" == "$1="* ]] && return 0; done
  return 1
}
args=(train)
has --data || args+=(--data "$(realpath "$data")")
has --epochs || args+=(--epochs "$epochs")
has --limit-train || args+=(--limit-train 2560)
has --limit-test || args+=(--limit-test 1000)
has --threads || args+=(--threads 1)
has --out || args+=(--out "$(realpath -m "$out")")
args+=("${extra[@]}")

netns_require
tmp="$(mktemp -d /tmp/minidl-two-hosts.XXXXXX)"
cleanup() {
  netns_stop
  netns_down
  rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

netns_up
netns_write_helpers "$tmp"
echo "two simulated hosts: ${NETNS[0]} (${NETNS_HOSTNAME[0]}, ${NETNS_ADDR[0]} on ${NETNS_IF[0]})" \
  "and ${NETNS[1]} (${NETNS_HOSTNAME[1]}, ${NETNS_ADDR[1]} on ${NETNS_IF[1]}), veth pair"
echo "launch: ip netns exec ${NETNS[0]} unshare --uts (hostname ${NETNS_HOSTNAME[0]})" \
  "mpirun -np 2 --hostfile HOSTFILE --map-by node --bind-to none" \
  "--mca plm_rsh_agent RSH_AGENT --mca btl tcp,self --mca btl_tcp_if_include $NETNS_SUBNET" \
  "--mca oob_tcp_if_include $NETNS_SUBNET RANK_WRAPPER $bin ${args[*]}"
echo "HOSTFILE:"
sed 's/^/  /' "$tmp/hostfile"
echo "RSH_AGENT:"
sed 's/^/  /' "$tmp/rsh_agent"
read -r rx0 tx0 < <(netns_link_bytes)
status=0
netns_mpirun "$tmp" "$tmp/rank_wrapper" "$bin" "${args[@]}" || status=$?
read -r rx1 tx1 < <(netns_link_bytes)
echo "veth ${NETNS_IF[0]} (${NETNS[0]}): received $((rx1 - rx0)) bytes, sent $((tx1 - tx0)) bytes"
exit "$status"
