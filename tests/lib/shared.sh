# shellcheck shell=bash
# Servers that scripts running at once (make check's lanes, tests/lib/run-integration.sh) share:
# the first user starts them, the last one stops them. Each user is a pid file in DIR/holders;
# DIR/holders.lock serialises starting, attaching and stopping.
#   shared_acquire DIR   lock; drop holders that are gone; returns 0 if others still hold DIR
#   shared_hold DIR      record this script as a holder, then unlock
#   shared_release DIR   forget this script; returns 0 (still locked) when it was the last
#   shared_unlock        release the lock taken by shared_acquire or shared_release
shared_acquire() {
	local f
	mkdir -p "$1/holders" || return 1
	exec {_SHARED_FD}>"$1/holders.lock" && flock "$_SHARED_FD" || return 1
	for f in "$1"/holders/*; do
		[ -e "$f" ] || continue
		kill -0 "${f##*/}" 2>/dev/null || rm -f "$f"
	done
	[ -n "$(ls -A "$1/holders")" ]
}
shared_unlock() {
	[ -n "${_SHARED_FD:-}" ] || return 0
	flock -u "$_SHARED_FD"
	exec {_SHARED_FD}>&-
	_SHARED_FD=
}
shared_hold() {
	: >"$1/holders/$$"
	shared_unlock
}
shared_release() {
	shared_acquire "$1" >/dev/null 2>&1
	rm -f "$1/holders/$$"
	[ -z "$(ls -A "$1/holders" 2>/dev/null)" ]
}
