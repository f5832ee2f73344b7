#!/usr/bin/env bash
# What the benchmarks need beyond the Python packages: nginx (the receiver) and wrk (the HTTP
# load generator), from Debian's packages; and for the kamailio benchmark Kamailio and SIPp
# (contrib/kamailio/install-packages.sh installs what is missing of them).
set -euo pipefail
bash "$(dirname "$0")/../contrib/kamailio/install-packages.sh"
missing=()
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || missing+=(nginx-light)
command -v wrk >/dev/null 2>&1 || missing+=(wrk)
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
echo "installing ${missing[*]} from Debian's packages" >&2
if [ "$(id -u)" -eq 0 ]; then
  sudo=""
elif command -v sudo >/dev/null 2>&1; then
  sudo="sudo"
else
  echo "cannot install ${missing[*]}: run as root or install them yourself (apt-get install ${missing[*]})" >&2
  exit 1
fi
$sudo apt-get update -q >/dev/null || true
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q "${missing[@]}" >/dev/null
