#!/bin/sh
# Install the benchmarks' load generator, wrk, from Debian's packages if it is missing.
# benchmarks/run.py calls this; without root or apt-get it falls back to its asyncio client.
set -e
if command -v wrk >/dev/null 2>&1; then
    exit 0
fi
if [ "$(id -u)" != "0" ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "wrk is not installed and cannot be installed here (needs root and apt-get)" >&2
    exit 1
fi
apt-get update -qq >/dev/null
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null
command -v wrk >/dev/null 2>&1
