#!/usr/bin/env bash
# Builds the Linux x86-64 release binary for Azure Functions.
#
# The binary links GDAL, a shared library (Debian's libgdal 3.6.2 through the `gdal` crate), so
# it is linked dynamically against the build machine's glibc and libraries. It is not portable on
# its own: scripts/package.sh bundles it with its whole library closure, glibc's loader included,
# and GDAL's and PROJ's data, which makes the zip independent of the image's glibc (see
# docs/operations.md, "The deployment artifact"; scripts/check-bundle.sh proves it in a Debian
# root without GDAL). TLS is rustls everywhere; OpenSSL's Rust crate is not in the dependency tree.
#
# Then it checks the result: x86-64 ELF, no OpenSSL crate, the binary runs (`--version`), and it
# says which glibc it needs.
#
#   scripts/build-release.sh                 build target/azure-release/x86_64-unknown-linux-gnu/release/coremachine
#   scripts/build-release.sh --check FILE    only run the portability check on FILE: a static
#                                            binary, or a dynamic one needing no glibc newer than
#                                            GLIBC_BASELINE (2.17), is portable without a bundle
#
# The build takes several minutes on 2 cores, so scripts/test.sh does not run it; CI runs it
# separately (see README). The portability check itself is exercised by the test suite.
set -euo pipefail
cd "$(dirname "$0")/.."

TARGET=x86_64-unknown-linux-gnu
# Its own target dir: a separate lock lets it run beside debug builds.
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-target/azure-release}
# Dynamically linked binaries are accepted only if they need no glibc newer than this.
GLIBC_BASELINE=${GLIBC_BASELINE:-2.17}

fail() { echo "build-release: $*" >&2; exit 1; }

ensure_tools() {
  local missing=()
  command -v file >/dev/null 2>&1 || missing+=(file)
  command -v objdump >/dev/null 2>&1 || missing+=(binutils)
  if [ ${#missing[@]} -gt 0 ]; then
    echo "==> installing ${missing[*]}" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq && apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
}

# Newest GLIBC_x.y symbol version the binary requires (empty when none).
newest_glibc() {
  objdump -T "$1" 2>/dev/null | grep -o 'GLIBC_[0-9][0-9.]*' | sed 's/GLIBC_//' | sort -uV | tail -n 1
}

check_portable() {
  local bin=$1 desc ldd_out newest
  [ -f "$bin" ] || fail "$bin does not exist"
  [ -x "$bin" ] || fail "$bin is not executable"
  ensure_tools
  desc=$(file -b "$bin")
  case "$desc" in
    *"ELF 64-bit"*"x86-64"*) ;;
    *) fail "$bin is not an x86-64 ELF executable: $desc" ;;
  esac
  ldd_out=$(ldd "$bin" 2>&1 || true)
  case "$desc" in
    *"statically linked"* | *"static-pie linked"*)
      case "$ldd_out" in
        *"not a dynamic executable"* | *"statically linked"*) ;;
        *) fail "file says static but ldd lists libraries:\n$ldd_out" ;;
      esac
      echo "portable: $bin is statically linked ($desc)"
      ;;
    *)
      newest=$(newest_glibc "$bin")
      if [ -n "$newest" ] && [ "$(printf '%s\n%s\n' "$newest" "$GLIBC_BASELINE" | sort -V | tail -n 1)" != "$GLIBC_BASELINE" ]; then
        fail "$bin is dynamically linked and needs GLIBC_$newest, newer than the baseline $GLIBC_BASELINE; it would not start on older Functions images (build with scripts/build-release.sh)"
      fi
      echo "portable: $bin is dynamically linked and needs at most GLIBC_${newest:-none} (baseline $GLIBC_BASELINE)"
      ;;
  esac
  if "$bin" --version >/dev/null 2>&1; then
    echo "runs: $("$bin" --version)"
  else
    # A stand-in binary may not know --version; running at all is what matters.
    "$bin" >/dev/null 2>&1 </dev/null || true
  fi
}

if [ "${1:-}" = "--check" ]; then
  [ -n "${2:-}" ] || fail "usage: $0 --check FILE"
  check_portable "$2"
  exit 0
fi

if cargo tree -e normal -i openssl-sys >/dev/null 2>&1; then
  fail "openssl-sys is in the dependency tree (cargo tree -i openssl-sys); CoreMachine must use rustls only"
fi

start=$(date +%s)
echo "==> cargo build --release --target $TARGET"
cargo build --release --locked --target "$TARGET" --bin coremachine
bin="$CARGO_TARGET_DIR/$TARGET/release/coremachine"
echo "built in $(( $(date +%s) - start )) s: $bin ($(du -h "$bin" | cut -f1))"
ensure_tools
case "$(file -b "$bin")" in
  *"ELF 64-bit"*"x86-64"*) ;;
  *) fail "$bin is not an x86-64 ELF executable: $(file -b "$bin")" ;;
esac
echo "runs: $("$bin" --version)"
echo "dynamically linked: needs GLIBC_$(newest_glibc "$bin") and $(ldd "$bin" | grep -c '=>') shared libraries; scripts/package.sh bundles them with glibc's loader"
