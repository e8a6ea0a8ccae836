#!/bin/sh
# Runs one maas component from the compiled tree: `<image> registry`, `<image> embeddings`, `<image> gateway`, ...
# The telemetry hook is loaded first (OTEL_* variables), then the component's main, as `maas up` does locally.
# exec: node becomes PID 1 and receives SIGTERM itself, so the drain runs.
set -eu
name="${1:-}"
if [ -z "$name" ]; then
  echo "usage: <component> [args...]   components: $(cd /app/dist && ls -d services/*/main.js gateway/main.js 2>/dev/null | sed 's#^services/##; s#/main.js$##' | grep -v '^runtime$' | tr '\n' ' ')" >&2
  exit 64
fi
shift
for entry in "/app/dist/services/$name/main.js" "/app/dist/$name/main.js"; do
  if [ -f "$entry" ]; then
    exec node --enable-source-maps --import /app/dist/services/runtime/telemetry/register.js "$entry" "$@"
  fi
done
echo "unknown component: $name" >&2
exit 64
