# Shared by the install scripts (sourced, not run).

apt_install() {  # apt_install PKG...: install the Debian packages not yet installed (root with apt-get only)
  if ! command -v apt-get >/dev/null 2>&1 || [ "$(id -u)" != 0 ]; then
    echo "note: not root or no apt-get: install $* yourself" >&2
    return 0
  fi
  local missing=""
  for pkg in "$@"; do
    dpkg -s "$pkg" >/dev/null 2>&1 || missing="$missing $pkg"
  done
  if [ -n "$missing" ]; then
    echo "installing Debian packages:$missing"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing
  fi
}
