#!/bin/bash
# build-guest.sh - build the tiny Linux VM of the demo and the end-to-end tests: a Debian kernel
# plus an initramfs that holds busybox, pcscd + libccid and the OpenSC tools, copied from this
# host's Debian packages.
#
# Output (in the cache dir): vmlinuz + initramfs.cpio.gz, and for a ~2x faster boot under TCG the
# same uncompressed: vmlinux (ELF, PVH entry) + initramfs.cpio; manifest.txt, stamp
# The build is skipped when the stamp matches: key = hash of this script, every file in guest/ and
# the versions of the kernel package and of every Debian package a copied file comes from.
#
# Usage: build-guest.sh [--force] [--kernel 6.1.0-N-amd64] [--cache DIR] [--print-key] [--check]
#        --check: only look for the host packages the build needs (exit 0, or 3 naming them)
# Env:   SPICE_SMARTCARD_GUEST_CACHE   cache dir (default <repo>/.cache/guest)
#        SPICE_SMARTCARD_GUEST_KERNEL  kernel ABI to use (default: newest linux-image-6.1.0-N-amd64 apt knows)
# Stdout: KEY=, KERNEL=, INITRD=, KERNEL_PVH=, INITRD_RAW=, CACHED=0|1 lines (for src/demo/guest-image.ts). Progress goes to stderr.
# Exit status: 0 ok, 2 usage, 3 missing host packages (the message names the apt-get line), 1 other.
set -euo pipefail
export LC_ALL=C PATH="$PATH:/usr/sbin:/sbin"
HERE="$(cd "$(dirname "$0")" && pwd -P)"
REPO="$(cd "$HERE/.." && pwd)"
CACHE="${SPICE_SMARTCARD_GUEST_CACHE:-$REPO/.cache/guest}"
KVER="${SPICE_SMARTCARD_GUEST_KERNEL:-}"
FORCE=0; PRINT_KEY=0; CHECK=0
while [ $# -gt 0 ]; do
  case "$1" in
    --force) FORCE=1; shift;;
    --kernel) KVER="$2"; shift 2;;
    --cache) CACHE="$2"; shift 2;;
    --print-key) PRINT_KEY=1; shift;;
    --check) CHECK=1; shift;;
    -h|--help) sed -n '2,17p' "$0"; exit 0;;
    *) echo "build-guest: unknown option $1" >&2; exit 2;;
  esac
done
T0=${EPOCHREALTIME/./}
log() { echo "[build-guest +$(( (${EPOCHREALTIME/./} - T0) / 1000 ))ms] $*" >&2; }
die() { echo "build-guest: $*" >&2; exit 1; }

LIBDIR=/usr/lib/x86_64-linux-gnu
# What goes into the guest. Each entry: host path|Debian package that provides it.
REQUIRED=(
  "/bin/busybox|busybox-static"
  "/usr/sbin/pcscd|pcscd"
  "/usr/lib/pcsc/drivers/ifd-ccid.bundle/Contents/Linux/libccid.so|libccid"
  "/etc/libccid_Info.plist|libccid"
  "/usr/bin/opensc-tool|opensc"
  "/usr/bin/pkcs15-tool|opensc"
  "/usr/bin/pkcs11-tool|opensc"
  "/usr/bin/piv-tool|opensc"
  "/usr/bin/opensc-explorer|opensc"
  "/usr/bin/pkcs15-crypt|opensc"
  "/etc/opensc/opensc.conf|opensc-pkcs11"
  "$LIBDIR/opensc-pkcs11.so|opensc-pkcs11"
  "$LIBDIR/libpcsclite.so.1|libpcsclite1"
  "$LIBDIR/libgcc_s.so.1|libgcc-s1"
)
# Host tools the build itself needs: command|package
TOOLS=("ldd|libc-bin" "ldconfig|libc-bin" "dpkg-deb|dpkg" "dpkg-query|dpkg" "apt-get|apt" "apt-cache|apt"
       "gzip|gzip" "xz|xz-utils" "cpio|cpio" "modinfo|kmod" "sha256sum|coreutils" "flock|util-linux")

MISSING=()
add_missing() { case " ${MISSING[*]:-} " in *" $1 "*) ;; *) MISSING+=("$1");; esac; }
for e in "${REQUIRED[@]}"; do [ -e "${e%%|*}" ] || add_missing "${e##*|}"; done
for e in "${TOOLS[@]}"; do command -v "${e%%|*}" >/dev/null 2>&1 || add_missing "${e##*|}"; done
# a dynamically linked busybox (package busybox) would need its libraries in the guest
if [ -x /bin/busybox ] && ldd /bin/busybox >/dev/null 2>&1; then add_missing busybox-static; fi
if [ ${#MISSING[@]} -gt 0 ]; then
  {
    echo "build-guest: missing host packages: ${MISSING[*]}"
    echo "build-guest: install them with:"
    echo "  apt-get install -y --no-install-recommends ${MISSING[*]}"
  } >&2
  exit 3
fi
[ $CHECK = 1 ] && exit 0

mkdir -p "$CACHE"
CACHE="$(cd "$CACHE" && pwd)"
# One builder at a time per cache dir (parallel test workers); the others then find the cache fresh.
exec 9>"$CACHE/.lock"
if ! flock -w 900 9; then die "timed out waiting for the lock $CACHE/.lock"; fi

emit() {
  echo "KEY=$KEY"; echo "KERNEL=$CACHE/vmlinuz"; echo "INITRD=$CACHE/initramfs.cpio.gz"
  [ -f "$CACHE/vmlinux" ] && echo "KERNEL_PVH=$CACHE/vmlinux"
  echo "INITRD_RAW=$CACHE/initramfs.cpio"; echo "CACHED=$1"
}
outputs_present() { [ -f "$CACHE/stamp" ] && [ -f "$CACHE/vmlinuz" ] && [ -f "$CACHE/initramfs.cpio.gz" ] && [ -f "$CACHE/initramfs.cpio" ]; }

# Fast path: nothing that feeds the key changed since the last build (same guest files, apt lists
# and dpkg database untouched, same kernel request): skip apt-cache, ldd and dpkg -S (~1 s).
guest_files_hash() { (cd "$HERE" && find . -type f -print0 | sort -z | xargs -0 sha256sum); }
FAST=$( { guest_files_hash; stat -c '%n %Y' /var/lib/apt/lists /var/lib/dpkg/status; echo "kernel=$KVER"; } | sha256sum | cut -c1-32)
if [ $FORCE = 0 ] && [ $PRINT_KEY = 0 ] && outputs_present && [ "$(sed -n 's/^fast=//p' "$CACHE/stamp")" = "$FAST" ]; then
  KEY=$(sed -n 's/^key=//p' "$CACHE/stamp")
  log "cache is fresh (key $KEY, inputs untouched): $CACHE"
  emit 1; exit 0
fi

# ---------- kernel package ----------
# The package is downloaded (never installed on the host) and only the kernel image plus the USB
# and fw_cfg modules are kept, extracted, in kernel/<abi>_<version>/ (~10 MB instead of the 70 MB .deb).
KDIR="$CACHE/kernel"; mkdir -p "$KDIR"
newest_extracted() { ls -1 "$KDIR" 2>/dev/null | grep -E "^${1:-6\.1\.0-[0-9]+-amd64}_" | sort -t- -k3,3n | tail -1 || true; }
if [ -z "$KVER" ]; then
  KVER=$(apt-cache pkgnames linux-image-6.1.0- 2>/dev/null | grep -E '^linux-image-6\.1\.0-[0-9]+-amd64$' \
         | sed 's/^linux-image-//' | sort -t- -k3,3n | tail -1 || true)
  if [ -z "$KVER" ]; then  # apt knows none (no lists?): the newest kernel already extracted
    e=$(newest_extracted); KVER=${e%%_*}
  fi
  [ -n "$KVER" ] || die "no linux-image-6.1.0-N-amd64 package known to apt (run: apt-get update)"
fi
KPKG="linux-image-$KVER"
KPKG_VER=$(apt-cache show --no-all-versions "$KPKG" 2>/dev/null | sed -n 's/^Version: //p' | head -1 || true)
if [ -z "$KPKG_VER" ]; then
  e=$(newest_extracted "${KVER//./\\.}"); KPKG_VER=${e#*_}
  [ -n "$e" ] || die "apt-cache does not know $KPKG (apt-get update?) and it is not in $KDIR"
  log "apt does not know $KPKG: using the extracted $e"
fi
KP="$KDIR/${KVER}_$KPKG_VER"

# ---------- files to copy (and the packages they come from) ----------
BINS=(/usr/sbin/pcscd /usr/bin/opensc-tool /usr/bin/pkcs15-tool /usr/bin/pkcs11-tool /usr/bin/piv-tool
      /usr/bin/opensc-explorer /usr/bin/pkcs15-crypt)
SOS=(/usr/lib/pcsc/drivers/ifd-ccid.bundle/Contents/Linux/libccid.so
     "$LIBDIR/opensc-pkcs11.so"
     "$LIBDIR/libpcsclite.so.1"   # dlopen()ed by OpenSC's PC/SC reader driver
     "$LIBDIR/libgcc_s.so.1")     # dlopen()ed by glibc on thread exit: pcscd aborts without it
CONFS=(/etc/libccid_Info.plist /etc/opensc/opensc.conf)
# openssl CLI (verifies signatures in the guest): adds ~1 MB, libcrypto is there for OpenSC anyway
if [ -x /usr/bin/openssl ]; then BINS+=(/usr/bin/openssl); [ -e /etc/ssl/openssl.cnf ] && CONFS+=(/etc/ssl/openssl.cnf); fi

declare -A SEEN=()
FILES=()
add_file() { [ -n "${SEEN[$1]:-}" ] && return 0; SEEN[$1]=1; FILES+=("$1"); }
for f in "${BINS[@]}" "${SOS[@]}"; do
  add_file "$f"
  out=$(ldd "$f" 2>&1) || die "ldd $f failed: $out"
  if grep -q 'not found' <<<"$out"; then die "ldd $f: $(grep 'not found' <<<"$out" | tr -s ' \t\n' ' ')"; fi
  for lib in $(awk '/=> \//{print $3} $1 ~ /^\//{print $1}' <<<"$out"); do add_file "$lib"; done
done
for f in "${CONFS[@]}"; do add_file "$f"; done

# owner package of each file (merged-/usr: dpkg may know it under /lib or /usr/lib)
owner_query=()
for f in /bin/busybox "${FILES[@]}"; do
  owner_query+=("$f")
  case "$f" in /usr/lib/*) owner_query+=("${f#/usr}");; /lib/*|/lib64/*) owner_query+=("/usr$f");; esac
done
PKGS=$(dpkg -S "${owner_query[@]}" 2>/dev/null | sed 's/: .*//; s/, /\n/g' | sort -u || true)
[ -n "$PKGS" ] || die "dpkg -S found no owner packages"
# shellcheck disable=SC2086
PKG_VERSIONS=$(dpkg-query -W -f '${Package}:${Architecture} ${Version}\n' $(sed 's/:.*//' <<<"$PKGS" | sort -u) | sort -u)

KEY=$( { echo "spice-smartcard-guest v1"; guest_files_hash; echo "kernel $KPKG $KPKG_VER"; echo "$PKG_VERSIONS"; } | sha256sum | cut -c1-32)
[ $PRINT_KEY = 1 ] && { echo "KEY=$KEY"; exit 0; }

if [ $FORCE = 0 ] && outputs_present && [ "$(sed -n 's/^key=//p' "$CACHE/stamp")" = "$KEY" ]; then
  log "cache is fresh (key $KEY): $CACHE"
  { grep -v '^fast=' "$CACHE/stamp"; echo "fast=$FAST"; } > "$CACHE/stamp.new" && mv -f "$CACHE/stamp.new" "$CACHE/stamp"
  emit 1; exit 0
fi
log "building guest (key $KEY, kernel $KVER $KPKG_VER) in $CACHE"

# ---------- kernel: download + extract (once per kernel package version) ----------
WORK=$(mktemp -d "$CACHE/build.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
if [ $FORCE = 1 ] || [ ! -f "$KP/.complete" ]; then
  rm -rf "$KP"
  mkdir -p "$WORK/dl" "$WORK/kpkg"
  log "apt-get download $KPKG=$KPKG_VER"
  (cd "$WORK/dl" && apt-get download -q "$KPKG=$KPKG_VER" 2>&1 | grep -v '^W: Download is performed unsandboxed' >&2) || true
  DEB=$(ls -1 "$WORK"/dl/*.deb 2>/dev/null | head -1 || true)
  [ -n "$DEB" ] || die "apt-get download $KPKG=$KPKG_VER failed (network? apt-get update?)"
  log "extracting kernel + USB modules from $(basename "$DEB")"
  dpkg-deb --fsys-tarfile "$DEB" | tar -x -C "$WORK/kpkg" --wildcards \
    "./boot/vmlinuz-$KVER" "./boot/config-$KVER" \
    "./lib/modules/$KVER/kernel/drivers/usb/common/*" "./lib/modules/$KVER/kernel/drivers/usb/core/*" \
    "./lib/modules/$KVER/kernel/drivers/usb/host/*" "./lib/modules/$KVER/kernel/drivers/firmware/qemu_fw_cfg.ko*"
  rm -f "$DEB"
  touch "$WORK/kpkg/.complete"
  mv "$WORK/kpkg" "$KP"
  # keep only this kernel
  for d in "$KDIR"/*; do [ "$d" = "$KP" ] || rm -rf "$d"; done
fi

# Fast boot under TCG: the uncompressed kernel (ELF with a Xen PVH note, CONFIG_PVH=y), booted by
# QEMU's PVH loader, and the uncompressed cpio skip ~2.5 s of decompression in the emulated CPU.
if [ ! -f "$KP/vmlinux" ] && [ ! -f "$KP/.no-vmlinux" ]; then
  BZ="$KP/boot/vmlinuz-$KVER"
  off=$(grep -obUaP '\xfd7zXZ\x00' "$BZ" | head -1 | cut -d: -f1 || true)
  # (xz stops after the first stream: tail's SIGPIPE must not count, hence no pipeline)
  if [ -n "$off" ] && xz -dc --single-stream < <(tail -c +$((off + 1)) "$BZ" 2>/dev/null) > "$KP/vmlinux.tmp" 2>/dev/null \
     && [ "$(head -c 4 "$KP/vmlinux.tmp" | od -An -tx1 | tr -d ' ')" = 7f454c46 ]; then
    mv "$KP/vmlinux.tmp" "$KP/vmlinux"
    log "extracted the uncompressed kernel (PVH boot)"
  else
    rm -f "$KP/vmlinux.tmp"; touch "$KP/.no-vmlinux"
    log "warning: no uncompressed ELF kernel in vmlinuz: the PVH fast boot is unavailable"
  fi
fi

# ---------- rootfs ----------
R="$WORK/rootfs"
mkdir -p "$R"/{usr/bin,usr/sbin,usr/lib,usr/lib64,proc,sys,dev,run,tmp,etc/guest,root,var,mnt,lib/modules}
ln -s usr/bin "$R/bin"; ln -s usr/sbin "$R/sbin"; ln -s usr/lib "$R/lib"; ln -s usr/lib64 "$R/lib64"
ln -s ../run "$R/var/run"; ln -s ../tmp "$R/var/tmp"

cp /bin/busybox "$R/usr/bin/busybox"
for a in $(/bin/busybox --list); do [ -e "$R/usr/bin/$a" ] || ln -s busybox "$R/usr/bin/$a"; done

put() {  # put SRC : copy dereferenced to the same path (under /usr for /lib, /lib64, /bin, /sbin)
  local src="$1" dst="$1"
  case "$dst" in /lib/*|/lib64/*|/bin/*|/sbin/*) dst="/usr$dst";; esac
  mkdir -p "$R$(dirname "$dst")"
  cp -L "$src" "$R$dst"
}
for f in "${FILES[@]}"; do put "$f"; done
# the libccid bundle's Info.plist is a symlink to /etc/libccid_Info.plist on Debian: keep it so
ln -s /etc/libccid_Info.plist "$R/usr/lib/pcsc/drivers/ifd-ccid.bundle/Contents/Info.plist"
mkdir -p "$R$LIBDIR/pkcs11"; ln -s ../opensc-pkcs11.so "$R$LIBDIR/pkcs11/opensc-pkcs11.so"
[ -e "$R/etc/ssl/openssl.cnf" ] && { mkdir -p "$R/usr/lib/ssl"; ln -s /etc/ssl/openssl.cnf "$R/usr/lib/ssl/openssl.cnf"; }
printf 'root:x:0:0:root:/root:/bin/sh\n' > "$R/etc/passwd"
printf 'root:x:0:\n' > "$R/etc/group"
printf '/usr/lib/x86_64-linux-gnu\n' > "$R/etc/ld.so.conf"
ldconfig -r "$R" 2>/dev/null || true

# ---------- kernel modules, dependencies first ----------
MODDIR="$KP/lib/modules/$KVER/kernel"
WANT=(ehci-pci uhci-hcd xhci-pci qemu_fw_cfg)   # ehci before uhci (companion controllers)
declare -A MODSEEN=()
ORDER=()
modfile() { find "$MODDIR" \( -name "$1.ko" -o -name "${1//-/_}.ko" -o -name "${1//_/-}.ko" \) | head -1; }
addmod() {
  local m="$1" f d
  [ -n "${MODSEEN[$m]:-}" ] && return 0
  MODSEEN[$m]=1
  f=$(modfile "$m"); [ -n "$f" ] || die "module $m not found in $KPKG"
  for d in $(modinfo -F depends "$f" | tr ',' ' '); do addmod "$d"; done
  ORDER+=("$(basename "$f")")
  cp "$f" "$R/lib/modules/"
}
for m in "${WANT[@]}"; do addmod "$m"; done
printf '%s\n' "${ORDER[@]}" > "$R/lib/modules/load-order"

# ---------- guest scripts ----------
install -m 0755 "$HERE/init" "$R/init"
install -m 0755 "$HERE/agent.sh" "$R/etc/guest/agent.sh"
{ echo "key=$KEY"; echo "kernel=$KVER $KPKG_VER"; } > "$R/etc/guest/build-info"

# ---------- pack ----------
(cd "$R" && find . -print0 | LC_ALL=C sort -z | cpio --null -o -H newc --quiet -R 0:0) > "$WORK/initramfs.cpio"
gzip -6 -k "$WORK/initramfs.cpio"
cp "$KP/boot/vmlinuz-$KVER" "$WORK/vmlinuz"
if [ -f "$KP/vmlinux" ]; then ln -f "$KP/vmlinux" "$WORK/vmlinux" 2>/dev/null || cp "$KP/vmlinux" "$WORK/vmlinux"; fi
{
  echo "# spice-smartcard e2e guest, key $KEY"
  echo "kernel $KPKG $KPKG_VER"
  echo "modules ${ORDER[*]}"
  echo "## packages"; echo "$PKG_VERSIONS"
  echo "## files"; (cd "$R" && find . -type f | sort | xargs du -k | sort -k2)
} > "$WORK/manifest.txt"
rm -f "$CACHE/stamp" "$CACHE/vmlinux"
mv -f "$WORK/vmlinuz" "$CACHE/vmlinuz"
[ -f "$WORK/vmlinux" ] && mv -f "$WORK/vmlinux" "$CACHE/vmlinux"
mv -f "$WORK/initramfs.cpio.gz" "$CACHE/initramfs.cpio.gz"
mv -f "$WORK/initramfs.cpio" "$CACHE/initramfs.cpio"
mv -f "$WORK/manifest.txt" "$CACHE/manifest.txt"
{ echo "key=$KEY"; echo "fast=$FAST"; echo "kernel=$KVER $KPKG_VER"; echo "built=$(date -u +%FT%TZ)"; } > "$CACHE/stamp.new"
mv -f "$CACHE/stamp.new" "$CACHE/stamp"
log "kernel    $CACHE/vmlinuz ($(du -k "$CACHE/vmlinuz" | cut -f1) KiB)"
log "initramfs $CACHE/initramfs.cpio.gz ($(du -k "$CACHE/initramfs.cpio.gz" | cut -f1) KiB; uncompressed $(du -k "$CACHE/initramfs.cpio" | cut -f1) KiB, $(grep -c '^[0-9]' "$CACHE/manifest.txt") files)"
emit 0
