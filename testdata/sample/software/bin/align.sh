#!/bin/sh
# A stand-in for a shared tool: counts the bases of a FASTA file.
grep -v '^>' "${1:-/dev/stdin}" | tr -d '\n' | wc -c
