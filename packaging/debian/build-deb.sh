#!/usr/bin/env bash
# Turns a staging root made by `make install PREFIX=/usr DESTDIR=ROOT` into the Debian
# package OUTDIR/toolgate_VERSION-1_ARCH.deb, the way Debian's helpers would: stripped
# binary, compressed manual page and documentation, copyright and changelog.Debian.gz,
# Depends computed from the libraries the binary links (dpkg-shlibdeps), conffiles,
# maintainer scripts and md5sums. `make deb` runs it.
#
#   packaging/debian/build-deb.sh ROOT OUTDIR
set -euo pipefail
root=$(cd "${1:?usage: build-deb.sh ROOT OUTDIR}" && pwd)
outdir=$(cd "${2:?usage: build-deb.sh ROOT OUTDIR}" && pwd)
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
die() { echo "build-deb.sh: $*" >&2; exit 1; }

upstream=$(cat "$repo/VERSION")
version="$upstream-1"
arch=$(dpkg --print-architecture)
changelog_version=$(sed -n '1s/^toolgate (\([^)]*\)).*/\1/p' "$here/changelog")
[ "$changelog_version" = "$version" ] ||
    die "packaging/debian/changelog starts with $changelog_version, VERSION says $version: add an entry"
# Reproducible timestamps (gzip -n drops names and times; dpkg-deb uses SOURCE_DATE_EPOCH).
SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git -C "$repo" log -1 --format=%ct 2>/dev/null || date +%s)}
export SOURCE_DATE_EPOCH

doc="$root/usr/share/doc/toolgate"
[ -x "$root/usr/bin/toolgate" ] || die "$root/usr/bin/toolgate is missing (make install PREFIX=/usr DESTDIR=...)"

# The binary without debugging symbols, notes and comments (as dh_strip does).
strip --remove-section=.comment --remove-section=.note "$root/usr/bin/toolgate"

# Manual pages always compressed; documentation over 4 KiB too (Debian policy 12.3).
gzip -9nf "$root/usr/share/man/man1/toolgate.1"
find "$doc" -type f -size +4k ! -name '*.gz' ! -name copyright -exec gzip -9nf {} +
install -m 0644 "$here/copyright" "$doc/copyright"
gzip -9nc "$here/changelog" > "$doc/changelog.Debian.gz"
chmod 0644 "$doc/changelog.Debian.gz"
install -D -m 0644 "$here/lintian-overrides" "$root/usr/share/lintian/overrides/toolgate"

# Depends: the packages that provide the libraries the binary links, with the versions
# their symbols need; adduser for the maintainer scripts.
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/debian"
printf 'Source: toolgate\n\nPackage: toolgate\nArchitecture: any\n' > "$work/debian/control"
shlibs=$(cd "$work" && dpkg-shlibdeps -O -e"$root/usr/bin/toolgate" 2>"$work/shlibdeps.err") ||
    { cat "$work/shlibdeps.err" >&2; die "dpkg-shlibdeps failed"; }
depends=$(printf '%s\n' "$shlibs" | sed -n 's/^shlibs:Depends=//p')
[ -n "$depends" ] || die "dpkg-shlibdeps found no libraries"
depends="$depends, adduser"

# Control area.
mkdir -p "$root/DEBIAN"
size=$(du -sk --exclude=DEBIAN "$root" | cut -f1)
sed -e "s|@VERSION@|$version|" -e "s|@ARCH@|$arch|" -e "s|@SIZE@|$size|" \
    -e "s|@DEPENDS@|$depends|" "$here/control.in" > "$root/DEBIAN/control"
install -m 0644 "$here/conffiles" "$root/DEBIAN/conffiles"
for script in postinst prerm postrm; do
    install -m 0755 "$here/$script" "$root/DEBIAN/$script"
done
# md5sums of every file but the conffiles (dpkg keeps those itself), as dh_md5sums does.
(cd "$root" && find . -type f ! -path ./DEBIAN/\* -printf '/%P\n' | LC_ALL=C sort |
    grep -vxF -f "$here/conffiles" | sed 's|^/||' | xargs -d '\n' md5sum) > "$root/DEBIAN/md5sums"
chmod 0644 "$root/DEBIAN/md5sums"

# Directories 0755 (make install gave the files their modes); everything owned by root.
find "$root" -type d -exec chmod 0755 {} +
deb="$outdir/toolgate_${version}_${arch}.deb"
dpkg-deb --root-owner-group -Zxz --build "$root" "$deb" >/dev/null
echo "$deb"
