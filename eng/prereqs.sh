# Sourced by ./lamina and ./test.sh: makes sure this machine has what Lamina needs, installing Debian packages
# when running as root, or stopping with a message that names them.

# Arguments: extra "path:package" pairs to require besides the server's own (the tests add theirs).
lamina_require_packages() {
  local missing=() pair
  command -v dotnet >/dev/null 2>&1 || { echo "lamina: the .NET 10 SDK is required (dotnet not found on PATH)" >&2; exit 1; }
  [ -x /usr/bin/bwrap ] || missing+=(bubblewrap)
  [ -x /usr/bin/python3 ] || missing+=(python3)
  [ -x /usr/bin/node ] || missing+=(nodejs)
  [ -x /usr/bin/curl ] || missing+=(curl)
  [ -x /usr/bin/pasta ] || missing+=(passt)
  for pair in "$@"; do
    [ -x "${pair%%:*}" ] || missing+=("${pair#*:}")
  done
  if [ ${#missing[@]} -eq 0 ]; then
    return 0
  fi
  if [ "$(id -u)" -ne 0 ]; then
    echo "lamina: missing Debian packages: ${missing[*]}" >&2
    echo "lamina: install them with: sudo apt-get install -y ${missing[*]}" >&2
    exit 1
  fi
  echo "lamina: installing Debian packages: ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  { apt-get update -qq && apt-get install -y -qq "${missing[@]}"; } >&2 || {
    echo "lamina: could not install ${missing[*]}; install them with apt-get and try again" >&2
    exit 1
  }
}

# Builds the server (Release) when the binary is missing or any source is newer than it.
lamina_build_if_needed() {
  local root="$1"
  local dll="$root/artifacts/bin/Lamina.Server/release/Lamina.Server.dll"
  if [ -f "$dll" ] && [ -z "$(find "$root/src" "$root/runtimes" "$root/Directory.Build.props" "$root/Directory.Packages.props" -newer "$dll" -not -path '*/obj/*' -not -path '*/bin/*' -print -quit 2>/dev/null)" ]; then
    return 0
  fi
  echo "lamina: building the server (Release)…" >&2
  dotnet build "$root/src/Lamina.Server/Lamina.Server.csproj" -c Release -nologo -v quiet -clp:ErrorsOnly >&2 || {
    echo "lamina: build failed" >&2
    exit 1
  }
  touch "$dll"
}
