#!/bin/sh
# /etc/guest/agent.sh - helpers for guest commands + the host command agent (busybox ash).
#
#   . /etc/guest/agent.sh            defines the helpers only (every agent command has them)
#   /etc/guest/agent.sh serve TTY    serves the agent protocol on TTY (normally /dev/ttyS1)
#
# Protocol (one line each way per frame, '\n' terminated, '\r' ignored):
#   host:  RUN <id> <timeout_ms> <base64 of the shell command>    (timeout 0 = none)
#          RUNX <id> <timeout_ms> <n>, then n bytes of base64 and '\n'  (same, for big commands:
#                               read in blocks instead of the shell's byte-by-byte line read)
#          PING <id>          -> AGENT-PONG <id>
#          EXIT <id>          -> AGENT-BYE <id>, the loop ends (/init then powers off)
#   guest: AGENT-READY                                  (once, when the loop starts)
#          AGENT-BEGIN <id>
#          <stdout, base64, wrapped lines>
#          AGENT-STDERR <id>
#          <stderr, base64, wrapped lines>
#          AGENT-END <id> rc=<n> ms=<n> timeout=<0|1>
# <id> is [A-Za-z0-9_-]+. Commands run one at a time, in their own session (so a timeout kills the
# whole process group), with stdin from /dev/null, cwd /tmp, and these helpers defined.

P11=/usr/lib/x86_64-linux-gnu/opensc-pkcs11.so
export P11

# milliseconds since boot, without forking (/proc/uptime has two decimals)
uptime_ms() {
  local up s c
  read -r up _ < /proc/uptime
  s=${up%.*}; c=${up#*.}
  echo $(( s * 1000 + (1$c - 100) * 10 ))
}
event() { echo "GUEST-EVENT: $1 uptime_ms=$(uptime_ms)${2:+ $2}" > /dev/console; }

# PC/SC view through OpenSC (pcscd must be running)
readers()      { opensc-tool -l 2>/dev/null | sed -n 's/^[0-9][0-9]*  *\(Yes\|No\)  *\(PIN pad \)\{0,1\} *//p'; }
reader_count() { opensc-tool -l 2>/dev/null | awk '$1 ~ /^[0-9]+$/ {n++} END {print n+0}'; }
# card_present [READER_INDEX] : a card is in that reader (any reader when omitted)
card_present() {
  opensc-tool -l 2>/dev/null | awk -v r="${1:-}" '$1 ~ /^[0-9]+$/ && $2 == "Yes" && (r == "" || $1 == r) {f=1} END {exit !f}'
}
# _wait TIMEOUT_S CMD... : poll CMD every $POLL_US microseconds (default 0.2 s)
_wait() {
  local t=$1 end; shift
  end=$(( $(uptime_ms) + t * 1000 ))
  while :; do
    "$@" && return 0
    [ "$(uptime_ms)" -ge "$end" ] && return 1
    usleep "${POLL_US:-200000}"
  done
}
_reader_count_ge() { [ "$(reader_count)" -ge "$1" ]; }
_no_card() { ! card_present "$@"; }
wait_readers() { _wait "${2:-20}" _reader_count_ge "${1:-1}"; }     # wait_readers N [TIMEOUT_S]
wait_card()    { _wait "${1:-60}" card_present ${2:+"$2"}; }        # wait_card [TIMEOUT_S] [READER]
wait_no_card() { _wait "${1:-60}" _no_card ${2:+"$2"}; }            # wait_no_card [TIMEOUT_S] [READER]
pcscd_log()    { cat /tmp/pcscd.log; }

# ---------------------------------------------------------------------------------------------
[ "${1:-}" = serve ] || return 0 2>/dev/null || exit 0

TTY=${2:-/dev/ttyS1}
D=/tmp/agent
mkdir -p "$D"
exec 3<>"$TTY" || { event agent-failed "tty=$TTY"; exit 1; }
# raw, no echo: the host's lines must not come back, and no byte may be translated
stty raw -echo -echoe -echok -echonl -echoctl -echoke <&3 2>/dev/null
set -f   # no globbing when splitting request lines
CR=$(printf '\r')

to_sleep_arg() { printf '%d.%03d' $(($1 / 1000)) $(($1 % 1000)); }

run_one() {  # run_one ID TIMEOUT_MS [B64]   (no B64: the base64 text is in $D/cmd.b64)
  local id=$1 tmo=$2 rc t0 t1 pid wd timedout=0
  rm -f "$D/out" "$D/err" "$D/timedout"
  [ $# -ge 3 ] && printf '%s' "$3" > "$D/cmd.b64"
  if ! base64 -d < "$D/cmd.b64" > "$D/cmd" 2>/dev/null; then
    printf 'AGENT-BEGIN %s\nAGENT-STDERR %s\n%s\nAGENT-END %s rc=254 ms=0 timeout=0\n' \
      "$id" "$id" "$(echo 'agent: bad base64 command' | base64)" "$id" >&3
    return
  fi
  t0=$(uptime_ms)
  (cd /tmp && exec setsid sh -c '. /etc/guest/agent.sh; . /tmp/agent/cmd' 3>&-) > "$D/out" 2> "$D/err" < /dev/null &
  pid=$!
  wd=""
  if [ "$tmo" -gt 0 ] 2>/dev/null; then
    setsid sh -c "sleep $(to_sleep_arg "$tmo"); touch $D/timedout; kill -KILL -$pid 2>/dev/null" 3>&- < /dev/null > /dev/null 2>&1 &
    wd=$!
  fi
  wait $pid; rc=$?
  t1=$(uptime_ms)
  [ -n "$wd" ] && kill -KILL -"$wd" 2>/dev/null
  [ -f "$D/timedout" ] && timedout=1
  {
    echo "AGENT-BEGIN $id"
    base64 "$D/out"
    echo "AGENT-STDERR $id"
    base64 "$D/err"
    echo "AGENT-END $id rc=$rc ms=$((t1 - t0)) timeout=$timedout"
  } >&3
  echo "GUEST-AGENT: id=$id rc=$rc ms=$((t1 - t0))${timedout#0}" > /dev/console
}

echo "AGENT-READY" >&3
event agent-ready "tty=$TTY"
while IFS= read -r line <&3; do
  line=${line%"$CR"}
  # shellcheck disable=SC2086
  set -- $line
  case "${1:-}" in
    RUN)
      if [ $# -ge 4 ]; then run_one "$2" "$3" "$4"; else echo "AGENT-ERROR ${2:-?} bad-request" >&3; fi;;
    RUNX)
      # head -c never reads past n bytes (the '\n' after them is read as an empty line)
      if [ $# -ge 4 ] && head -c "$4" <&3 > "$D/cmd.b64"; then run_one "$2" "$3"; else echo "AGENT-ERROR ${2:-?} bad-request" >&3; fi;;
    PING) echo "AGENT-PONG ${2:-}" >&3;;
    EXIT) echo "AGENT-BYE ${2:-}" >&3; break;;
    "")   ;;
    *)    echo "AGENT-ERROR ${2:-?} unknown-verb" >&3;;
  esac
done
exec 3>&-
event agent-exit
exit 0
