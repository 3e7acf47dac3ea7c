#!/usr/bin/env bash
# Install the Node.js benchmark peers (ws, socket.io) from the committed lock file.
# Usage: loadtest/peers/install.sh     (needs Node.js >= 18 and npm)
set -euo pipefail
cd "$(dirname "$0")/node"
if ! command -v npm >/dev/null 2>&1; then
  echo "npm not found: install Node.js >= 18 to benchmark against the Node peers" >&2
  exit 1
fi
npm ci --no-audit --no-fund --loglevel=error
echo "Node peers installed in $(pwd)/node_modules"
