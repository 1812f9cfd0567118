#!/bin/sh
# Validates MPDs against the ISO/IEC 23009-1 MPD schema with xmllint,
# offline: catalog.xml maps the schema's imports (xlink.xsd, xml.xsd) to
# the copies in this directory, and --nonet forbids any other fetch.
#
#   tests/dash-schema/validate.sh FILE.mpd...
#
# The schema is $DASH_MPD_XSD, else DASH-MPD.xsd next to this script (not
# in the repository: see README.md). Exits 0 when every file is valid, 1
# when one is not (xmllint's messages on stderr), 2 on bad usage, and 77
# (the "skipped" of automake and meson) when there is no schema or no
# xmllint.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
[ $# -gt 0 ] || { echo "usage: $0 FILE.mpd..." >&2; exit 2; }
xsd=${DASH_MPD_XSD:-$here/DASH-MPD.xsd}
[ -f "$xsd" ] || { echo "no MPD schema at $xsd (see $here/README.md)" >&2; exit 77; }
command -v xmllint >/dev/null 2>&1 || { echo "xmllint not found (apt-get install libxml2-utils)" >&2; exit 77; }
XML_CATALOG_FILES="$here/catalog.xml" xmllint --nonet --noout --schema "$xsd" "$@" || exit 1
