#!/usr/bin/env bash
# Browser end-to-end test of the demo page: Debian's chromium driven by playwright-core (never a downloaded
# browser). Installs chromium when /usr/bin/chromium is missing, builds, starts the server on a free port with
# memory storage, runs test/e2e/browser.ts against it, and stops the server. Screenshots go to
# test/e2e/artifacts/ (their paths are printed). Run from anywhere: bash test/e2e/run.sh
set -euo pipefail
cd "$(dirname "$0")/../.."

if [ ! -x /usr/bin/chromium ]; then
  echo "e2e: installing Debian's chromium"
  apt-get update -q
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium
fi

echo "e2e: building (server and demo bundle)"
npm run build --silent

ARTIFACTS="test/e2e/artifacts"
mkdir -p "$ARTIFACTS"
LOG="$ARTIFACTS/server.log"

PORT=0 HOST=127.0.0.1 DATABASE_URL=memory:// LOG_LEVEL=info node dist/main.js >"$LOG" 2>&1 &
SERVER=$!
stop_server() {
  kill "$SERVER" 2>/dev/null || true
  wait "$SERVER" 2>/dev/null || true
}
trap stop_server EXIT

URL=""
for _ in $(seq 1 300); do
  URL="$(grep -o 'docsync listening on http://[0-9.]*:[0-9]*' "$LOG" | head -n 1 | sed 's/docsync listening on //' || true)"
  [ -n "$URL" ] && break
  if ! kill -0 "$SERVER" 2>/dev/null; then
    echo "e2e: the server exited during start-up:" >&2
    cat "$LOG" >&2
    exit 1
  fi
  sleep 0.1
done
if [ -z "$URL" ]; then
  echo "e2e: the server did not start within 30 s:" >&2
  cat "$LOG" >&2
  exit 1
fi
echo "e2e: server at $URL"

node_modules/.bin/tsx test/e2e/browser.ts "$URL" "$ARTIFACTS"
