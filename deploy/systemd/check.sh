#!/usr/bin/env bash
# make systemd-check: deploy/systemd/tokend.service must pass
# `systemd-analyze verify` with no output at all (warnings count) and score an
# overall exposure of at most $LIMIT in `systemd-analyze security --offline=yes`.
#
# Needs no running systemd (works in a container). Installs systemd-analyze
# (Debian package `systemd`) and /bin/kill (`procps`, named by ExecReload=)
# with apt-get when they are missing; otherwise it only builds tokend (cached
# by go build) and runs the two analyses, in a few seconds.
set -euo pipefail

LIMIT=2.0
cd "$(dirname "$0")/../.."
unit=deploy/systemd/tokend.service

# --- tools ----------------------------------------------------------------
missing=()
command -v systemd-analyze >/dev/null 2>&1 || missing+=(systemd)
[[ -x /bin/kill ]] || missing+=(procps)
if ((${#missing[@]})); then
	sudo=()
	if [[ $(id -u) != 0 ]]; then
		if command -v sudo >/dev/null 2>&1; then
			sudo=(sudo)
		else
			echo "systemd-check: need the Debian package(s) ${missing[*]}; run as root or install them" >&2
			exit 1
		fi
	fi
	echo "systemd-check: installing ${missing[*]} with apt-get"
	"${sudo[@]}" apt-get update -qq
	"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive \
		apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
	command -v systemd-analyze >/dev/null 2>&1 && [[ -x /bin/kill ]] || {
		echo "systemd-check: systemd-analyze or /bin/kill still missing after apt-get install ${missing[*]}" >&2
		exit 1
	}
fi

# --- a copy of the unit whose ExecStart= exists ---------------------------
# verify checks that every Exec*= binary exists and is executable, so build
# tokend and point the copy at it; the copy keeps the name tokend.service.
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"${GO:-go}" build -o "$tmp/tokend" ./cmd/tokend
sed "s#/usr/local/bin/tokend#$tmp/tokend#g" "$unit" >"$tmp/tokend.service"
if grep -q /usr/local/bin/tokend "$tmp/tokend.service"; then
	echo "systemd-check: could not rewrite the binary path in $unit" >&2
	exit 1
fi

export SYSTEMD_COLORS=0 SYSTEMD_PAGER=cat SYSTEMD_LOG_COLOR=0

# --- verify: any output at all is a failure --------------------------------
rc=0
out=$(systemd-analyze verify "$tmp/tokend.service" 2>&1) || rc=$?
if ((rc != 0)) || [[ -n $out ]]; then
	echo "systemd-check: systemd-analyze verify $unit (exit $rc):" >&2
	printf '%s\n' "${out//$tmp\//}" >&2
	exit 1
fi

# --- security: overall exposure <= LIMIT ----------------------------------
rc=0
report=$(systemd-analyze security --offline=yes --no-pager "$tmp/tokend.service" 2>&1) || rc=$?
exposure=$(sed -n 's/.*Overall exposure level for tokend\.service: \([0-9][0-9]*\.[0-9]\).*/\1/p' <<<"$report")
if ((rc != 0)) || [[ -z $exposure ]]; then
	echo "systemd-check: systemd-analyze security --offline=yes $unit (exit $rc) gave no exposure level:" >&2
	printf '%s\n' "$report" >&2
	exit 1
fi
if ! awk -v e="$exposure" -v l="$LIMIT" 'BEGIN { exit !(e + 0 <= l + 0) }'; then
	printf '%s\n' "$report" | grep -E '✗|Overall' >&2 || true
	echo "systemd-check: FAIL: exposure $exposure > limit $LIMIT ($unit)" >&2
	exit 1
fi
echo "systemd-check: verify clean; exposure $exposure (limit $LIMIT)"
