#!/bin/sh
# Registers the .vv type (harmless when virt-viewer already did) and refreshes the desktop database so
# the spice:// and spice+tls:// handlers in the .desktop file take effect.
set -e
if command -v xdg-mime >/dev/null 2>&1; then
  xdg-mime install --mode system --novendor /usr/lib/spice-smartcard/resources/spice-smartcard-vv.xml || true
fi
if command -v update-desktop-database >/dev/null 2>&1; then
  update-desktop-database -q /usr/share/applications || true
fi
