#!/usr/bin/env bash
# Builds the Debian package target/debian/meshd_VERSION_ARCH.deb: meshd and
# meshctl (release build, debug info stripped), the systemd unit, the
# example configuration in /etc/meshd, man pages, shell completions, the
# docs the unit names, and the licence. Prints the package's path.
#
#   bash scripts/package-deb.sh            # builds the release binaries if missing
#   dpkg -i target/debian/meshd_*.deb      # then: docs/operations.md, "Install"
set -euo pipefail
cd "$(dirname "$0")/.."

FROM=${MESHD_PACKAGE_FROM:-target/release}
if [ ! -x "$FROM/meshd" ] || [ ! -x "$FROM/meshctl" ]; then
  cargo build --locked --release -p meshd -p meshctl >&2
fi
VERSION=$("$FROM/meshd" --version | awk '{print $2}')
ARCH=$(dpkg --print-architecture)
OUT=target/debian
mkdir -p "$OUT"
ROOT=$(mktemp -d)
trap 'rm -rf "$ROOT"' EXIT
chmod 0755 "$ROOT"

install -d "$ROOT/DEBIAN" "$ROOT/usr/bin" "$ROOT/lib/systemd/system" "$ROOT/etc/meshd" \
  "$ROOT/usr/share/doc/meshd" "$ROOT/usr/share/man/man1" \
  "$ROOT/usr/share/bash-completion/completions" "$ROOT/usr/share/zsh/vendor-completions" \
  "$ROOT/usr/share/fish/vendor_completions.d"
for b in meshd meshctl; do
  install -m 0755 "$FROM/$b" "$ROOT/usr/bin/$b"
  strip --strip-debug "$ROOT/usr/bin/$b"
done
sed 's|/usr/local/bin/|/usr/bin/|g' configs/meshd.service >"$ROOT/lib/systemd/system/meshd.service"
chmod 0644 "$ROOT/lib/systemd/system/meshd.service"
install -m 0644 configs/node.example.toml "$ROOT/etc/meshd/node.example.toml"
for d in README.md docs/operations.md docs/policy.md docs/protocol.md docs/threat-model.md; do
  install -m 0644 "$d" "$ROOT/usr/share/doc/meshd/$(basename "$d")"
done
{
  printf 'Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n'
  printf 'Upstream-Name: meshd\n\nFiles: *\nCopyright: 2026 The meshd developers\nLicense: Apache-2.0 or MIT\n\n'
  printf 'License: Apache-2.0\n'
  sed 's/^$/./; s/^/ /' LICENSE-APACHE
  printf '\nLicense: MIT\n'
  sed 's/^$/./; s/^/ /' LICENSE-MIT
} >"$ROOT/usr/share/doc/meshd/copyright"
chmod 0644 "$ROOT/usr/share/doc/meshd/copyright"

GEN=$(mktemp -d)
"$FROM/meshd" --man-page >"$GEN/meshd.1"
"$FROM/meshctl" generate "$GEN" >/dev/null
for m in "$GEN"/meshd.1 "$GEN"/man/*.1; do
  gzip -9n <"$m" >"$ROOT/usr/share/man/man1/$(basename "$m").gz"
done
install -m 0644 "$GEN/completions/meshctl.bash" "$ROOT/usr/share/bash-completion/completions/meshctl"
install -m 0644 "$GEN/completions/_meshctl" "$ROOT/usr/share/zsh/vendor-completions/_meshctl"
install -m 0644 "$GEN/completions/meshctl.fish" "$ROOT/usr/share/fish/vendor_completions.d/meshctl.fish"
rm -rf "$GEN"
chmod 0644 "$ROOT"/usr/share/man/man1/*.gz

cat >"$ROOT/DEBIAN/control" <<EOF
Package: meshd
Version: $VERSION
Architecture: $ARCH
Maintainer: The meshd developers <meshd@invalid>
Depends: libc6 (>= 2.34)
Section: net
Priority: optional
Installed-Size: $(du -sk "$ROOT" | cut -f1)
Homepage: https://invalid/meshd
Description: post-quantum secure mesh overlay
 meshd builds an encrypted mesh between hosts: a Noise IK handshake
 hybridised with ML-KEM-768, a TUN data plane, route health with failover
 through relays, default-deny segments and enclaves. meshctl administers it:
 CA and certificates, status, peers, routes, policy, revocation, reload.
EOF
printf '/etc/meshd/node.example.toml\n' >"$ROOT/DEBIAN/conffiles"
cat >"$ROOT/DEBIAN/postinst" <<'EOF'
#!/bin/sh
# The unit runs meshd as the system user meshd, which reads /etc/meshd.
set -e
# Installed into another root (dpkg --root): that system's first start
# creates what it needs; nothing here touches the running one.
[ -n "${DPKG_ROOT:-}" ] && exit 0
if [ "$1" = configure ]; then
  if ! getent passwd meshd >/dev/null; then
    adduser --system --group --no-create-home --home /var/lib/meshd --quiet meshd
  fi
  chown root:meshd /etc/meshd
  chmod 0750 /etc/meshd
  if [ -d /run/systemd/system ]; then
    systemctl daemon-reload >/dev/null || true
  fi
fi
EOF
cat >"$ROOT/DEBIAN/prerm" <<'EOF'
#!/bin/sh
set -e
[ -n "${DPKG_ROOT:-}" ] && exit 0
if [ "$1" = remove ] && [ -d /run/systemd/system ]; then
  systemctl stop meshd.service >/dev/null 2>&1 || true
fi
EOF
chmod 0755 "$ROOT/DEBIAN/postinst" "$ROOT/DEBIAN/prerm"

DEB="$OUT/meshd_${VERSION}_${ARCH}.deb"
dpkg-deb --root-owner-group -Zxz --build "$ROOT" "$DEB" >&2
echo "$DEB"
