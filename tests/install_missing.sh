# Sourced by the test scripts: install_missing WHO PACKAGE... installs the
# Debian packages named (none: does nothing), with sudo when not root, and
# says which script asked.
install_missing() {
  local who=$1
  shift
  [ $# -gt 0 ] || return 0
  echo "$who: installing $*"
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "$@" >/dev/null
}
