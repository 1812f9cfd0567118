#!/usr/bin/env bash
# Hostile-file benchmark: the peak RSS and CPU time casterpak spends on
# files built to make it do unbounded work. Runs the hostile tests with
# their figures shown:
#   - tests/cli/hostile_mutations.rs: good files with every box size set
#     to 0, 1, 2^32-1 and 2^64-1, every table count set huge, truncations
#     and bit flips (about 730 files), all answered by one server; prints
#     the worst request's CPU time and serve's peak RSS;
#   - tests/cli/hostile_files.rs: 40 traks of 2^22 samples, a 92 MB
#     segment, 18 000 stray truns (peak RSS under GNU time).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo test --release --test cli hostile -- --nocapture --test-threads 1 2>&1 |
    grep -oE '(hostile variants|hostile file|test result):? .*'
