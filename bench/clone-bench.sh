#!/bin/sh
# SPDX-License-Identifier: MIT
# ihop clone benchmark; see bench/clone-bench.py (or --help) for what it measures.
exec /usr/bin/python3 "$(dirname "$0")/clone-bench.py" "$@"
