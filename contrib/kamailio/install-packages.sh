#!/usr/bin/env bash
# Installs what the Kamailio recipe, its test and its benchmark need, from Debian's packages:
#   kamailio                 the proxy (tm, rr, dialog, mqueue, rtimer, ...)
#   kamailio-utils-modules   http_client (libcurl)
#   kamailio-extra-modules   jansson (JSON building)
#   sip-tester               SIPp (the test's phones)
# Does nothing when they are all there. Needs root (or sudo). Exit status 0 when everything is
# installed afterwards; otherwise non-zero with the reason on stderr.
set -euo pipefail

need=()
have_module() { [ -e "/usr/lib/x86_64-linux-gnu/kamailio/modules/$1.so" ] || ls /usr/lib/*/kamailio/modules/"$1".so >/dev/null 2>&1; }
command -v kamailio >/dev/null 2>&1 || [ -x /usr/sbin/kamailio ] || need+=(kamailio)
have_module http_client || need+=(kamailio-utils-modules)
have_module jansson || need+=(kamailio-extra-modules)
command -v sipp >/dev/null 2>&1 || need+=(sip-tester)
if [ ${#need[@]} -eq 0 ]; then
  exit 0
fi

if [ "$(id -u)" -eq 0 ]; then
  sudo=""
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
  sudo="sudo -n"
else
  echo "cannot install ${need[*]}: not root and no password-less sudo" >&2
  exit 1
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "cannot install ${need[*]}: apt-get not found (not a Debian-like system)" >&2
  exit 1
fi
echo "installing ${need[*]} from Debian's packages" >&2
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -q >/dev/null 2>&1 || true
if ! $sudo apt-get install -y -q --no-install-recommends "${need[@]}" >/tmp/callhook-kamailio-apt.log 2>&1; then
  echo "apt-get install ${need[*]} failed:" >&2
  tail -n 5 /tmp/callhook-kamailio-apt.log >&2
  exit 1
fi
