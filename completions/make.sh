#!/bin/sh
# Regenerates completions/ and man/ from the command-line definition.
# tests/cli/docs.rs fails when they are out of date.
set -eu
cd "$(dirname "$0")/.."
cargo build -q
bin=target/debug/casterpak
$bin completions bash > completions/casterpak.bash
$bin completions zsh > completions/_casterpak
$bin completions fish > completions/casterpak.fish
$bin man > man/casterpak.1
for sub in package serve gc stat invalidate master token; do
    $bin man "$sub" > "man/casterpak-$sub.1"
done
