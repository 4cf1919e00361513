#!/usr/bin/env bash
# Extract netprobe's translatable messages (Babel, a dev dependency) and merge them into the
# Simplified Chinese catalogue; new entries arrive untranslated for a person to fill in.
set -euo pipefail
cd "$(dirname "$0")/.."
template=$(mktemp --suffix=.pot)
trap 'rm -f "$template"' EXIT
pybabel extract -k _ -k N_ -k ngettext:1,2 --no-wrap --no-location -o "$template" netprobe
pybabel update --no-wrap --no-fuzzy-matching -l zh_CN -D netprobe \
    -i "$template" -o netprobe/i18n/zh_CN/netprobe.po
