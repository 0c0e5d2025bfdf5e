#!/usr/bin/env bash
# The main job: install what is missing, build, and run the built-in demo. Extra arguments go to `r1 demo`.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh build
exec build/r1 demo "$@"
