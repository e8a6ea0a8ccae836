#!/bin/sh
# Drops from a production node_modules what can never run in this image: onnxruntime-node's binaries for other
# platforms (about 250 MB) and buf's compiler binary (a build tool that npm installs as an optional package).
set -eu
keep="$(node -p 'process.platform + "/" + process.arch')"
for dir in node_modules/onnxruntime-node/bin/napi-v6/*/*; do
  case "$dir" in
    */"$keep") ;;
    *) rm -rf "$dir" ;;
  esac
done
rm -rf node_modules/@bufbuild/buf node_modules/@bufbuild/buf-* node_modules/.bin/buf*
