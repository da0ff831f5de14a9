#!/usr/bin/env bash
# Set up (.venv with the package) and run the main job once: start the gRPC server on
# the bundled style model, stylise the bundled sample photo (or the photos given)
# through gRPC, and print where the results are. Extra arguments go to `robust-style demo`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/robust-style demo "$@"
