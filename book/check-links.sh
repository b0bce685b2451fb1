#!/usr/bin/env bash
# Every chapter listed in SUMMARY.md exists, and every chapter is listed (no mdbook needed).
set -euo pipefail
cd "$(dirname "$0")/src"
status=0
for page in $(grep -o '([^)]*\.md)' SUMMARY.md | tr -d '()'); do
    [ -f "$page" ] || { echo "book: SUMMARY.md lists missing page $page"; status=1; }
done
for page in *.md; do
    [ "$page" = SUMMARY.md ] && continue
    grep -q "($page)" SUMMARY.md || { echo "book: $page is not listed in SUMMARY.md"; status=1; }
done
exit $status
