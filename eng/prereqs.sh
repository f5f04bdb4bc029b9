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
    [ -e "${pair%%:*}" ] || missing+=("${pair#*:}")
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
  { apt-get update -qq && apt-get install -y -qq -o DPkg::Lock::Timeout=300 "${missing[@]}"; } >&2 || {
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

# The AWS SDKs Lambda's managed runtimes include, so a function can `import boto3` or import `@aws-sdk/client-s3`
# without bundling them (issue #20): the AWS SDK for JavaScript v3 clients for the services Lamina serves
# (node_modules/, on the Node.js runtimes' NODE_PATH as /var/runtime/node_modules) and boto3 (python/site-packages/,
# on the Python runtimes' path after the function's own packages and its layers). Installed once into the runtimes
# folder next to the server binary; each part is made in a temp folder and renamed into place, so an interrupted
# install leaves nothing half-made. Env: LAMINA_JS_SDK_VERSION.
LAMINA_NODE_SDK_PACKAGES="client-s3 s3-request-presigner lib-storage client-dynamodb lib-dynamodb client-sqs client-sns client-lambda client-eventbridge client-cloudwatch-logs"
lamina_runtime_sdks() {
  local runtimes="$1/artifacts/bin/Lamina.Server/release/lambda-runtimes"
  local version="${LAMINA_JS_SDK_VERSION:-3.1164.0}"
  local stamp="$version $LAMINA_NODE_SDK_PACKAGES"
  if [ ! -f "$runtimes/node_modules/.lamina-sdk" ] || [ "$(cat "$runtimes/node_modules/.lamina-sdk")" != "$stamp" ]; then
    echo "lamina: installing the AWS SDK for JavaScript v3 $version for the Node.js runtimes (npm, once)…" >&2
    local work packages=() p
    for p in $LAMINA_NODE_SDK_PACKAGES; do packages+=("@aws-sdk/$p@$version"); done
    work="$(mktemp -d "$runtimes/.node-sdk.XXXXXX")"
    if ( cd "$work" && printf '{"name":"lamina-runtime-sdk","private":true}\n' >package.json \
         && npm_config_update_notifier=false npm_config_fund=false npm_config_audit=false \
            npm install --no-save --ignore-scripts --no-package-lock --omit=dev "${packages[@]}" ) >&2; then
      echo "$stamp" >"$work/node_modules/.lamina-sdk"
      rm -rf "$runtimes/node_modules"
      mv "$work/node_modules" "$runtimes/node_modules"
    else
      echo "lamina: warning: npm could not install the AWS SDK for JavaScript; Node.js functions must bundle it" >&2
    fi
    rm -rf "$work"
  fi
  if [ ! -f "$runtimes/python/site-packages/.lamina-sdk" ]; then
    lamina_python_sdk "$runtimes/python/site-packages" || true
  fi
}

# boto3 for the Python runtimes. Functions reach Lamina through AWS_ENDPOINT_URL, which boto3 honours from 1.28 on;
# Debian 12's python3-boto3 is 1.26. So the copy comes from a newer boto3 installed with pip on this machine (the
# files its distributions list, as installed: pure Python, the same 3.11 as Debian's interpreter), else from Debian's
# package, with a warning that such functions must then pass endpoint_url themselves.
lamina_python_sdk() {
  local target="$1" work
  work="$(mktemp -d "$(dirname "$target")/.python-sdk.XXXXXX")"
  chmod 755 "$work" # mktemp's 0700 would hide it from the sandboxes' unprivileged user
  if command -v python3 >/dev/null 2>&1 && python3 - "$work" >&2 <<'PY'
import importlib.metadata as md, pathlib, shutil, sys
target = pathlib.Path(sys.argv[1])
boto3 = md.distribution("boto3")
if tuple(int(x) for x in boto3.version.split(".")[:2]) < (1, 28):
    sys.exit(f"boto3 {boto3.version} predates AWS_ENDPOINT_URL")
for name in ("boto3", "botocore", "s3transfer", "jmespath", "python-dateutil", "six", "urllib3"):
    for file in md.distribution(name).files or ():
        if "__pycache__" in file.parts or file.parts[0].startswith(".."):
            continue
        dest = target / file
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(file.locate(), dest)
print(f"lamina: boto3 {boto3.version} for the Python runtimes, from {boto3.locate_file('')}", file=sys.stderr)
PY
  then
    touch "$work/.lamina-sdk"
    rm -rf "$target"
    mv "$work" "$target"
    return 0
  fi
  rm -rf "$work"
  echo "lamina: warning: no boto3 >= 1.28 installed with pip; Python functions get Debian's python3-boto3, which ignores AWS_ENDPOINT_URL" >&2
  [ -d /usr/lib/python3/dist-packages/boto3 ] || lamina_require_packages /usr/lib/python3/dist-packages/boto3/__init__.py:python3-boto3
  return 1
}
