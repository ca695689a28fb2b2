#!/bin/sh
# Counts word frequencies in input/text.txt; writes out/top.txt.
set -e
mkdir -p out
tr -cs 'A-Za-z' '\n' < input/text.txt | tr 'A-Z' 'a-z' | sort | uniq -c | sort -rn | head -n "${TOP:-5}" > out/top.txt
echo "counted $(wc -l < input/text.txt) lines"
