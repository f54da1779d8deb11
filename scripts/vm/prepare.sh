#!/usr/bin/env bash
# Prepare the small VM of the "VM vs container" lesson: a Debian kernel (from
# the linux-image-amd64 package, unpacked with dpkg-deb, nothing installed) and
# a busybox initramfs whose /init prints a marker on the serial console and
# powers off. Idempotent: a second run finds both files and does nothing.
# Usage: scripts/vm/prepare.sh [CACHE_DIR]   (default /var/cache/estiba/vm)
set -euo pipefail
dir="${1:-${ESTIBA_VM_DIR:-/var/cache/estiba/vm}}"
mkdir -p "$dir"
cd "$dir"

if [ ! -f vmlinuz ]; then
    work=$(mktemp -d)
    trap 'rm -rf "$work"' EXIT
    chmod 755 "$work"
    # linux-image-amd64 is a metapackage: find the versioned package it depends on.
    pkg=$(apt-cache depends linux-image-amd64 | awk '/Depends: linux-image-[0-9]/ {print $2; exit}')
    [ -n "$pkg" ] || { echo "estiba: no linux-image package found by apt-cache" >&2; exit 1; }
    (cd "$work" && apt-get download -q "$pkg" >/dev/null)
    dpkg-deb -x "$work"/*.deb "$work/x"
    cp "$(ls "$work"/x/boot/vmlinuz-* | head -1)" vmlinuz.tmp
    mv vmlinuz.tmp vmlinuz
    echo "$pkg" > kernel-package
fi

if [ ! -f initramfs.cpio.gz ]; then
    bb=$(command -v busybox)
    file "$bb" 2>/dev/null | grep -q 'statically linked' || bb=/bin/busybox
    root=$(mktemp -d)
    mkdir -p "$root"/{bin,proc,sys,dev}
    cp "$bb" "$root/bin/busybox"
    for cmd in sh echo mount poweroff cat sleep; do ln -s busybox "$root/bin/$cmd"; done
    cat > "$root/init" <<'INIT'
#!/bin/sh
/bin/busybox mount -t proc proc /proc
echo "ESTIBA-VM-INIT-UP"
/bin/busybox cat /proc/meminfo | /bin/busybox head -n 2
/bin/busybox poweroff -f
INIT
    chmod 755 "$root/init"
    (cd "$root" && find . | cpio -o -H newc --quiet | gzip -9) > initramfs.cpio.gz.tmp
    mv initramfs.cpio.gz.tmp initramfs.cpio.gz
    rm -rf "$root"
fi
echo "$dir"
