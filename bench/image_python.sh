#!/usr/bin/env bash
# Build CPython the way the image's base (python:3.11-slim) is built, and a virtualenv of
# this tree's wheel on it, so that the router's CPU is measured on the interpreter that
# ships: profile-guided and link-time optimised (`--enable-optimizations --with-lto`), with
# a shared libpython, as docker-library/python's Dockerfile configures it. On an interpreter
# built without those options (pyenv's default) the same router spends 9-14% more CPU per
# request and 2-6% more per streamed part (bench/README.md).
#
#   bench/image_python.sh Python-3.11.x.tar.gz /tmp/image-python
#   python -m bench.router_side_by_side --interpreter image=/tmp/image-python/venv/bin/python
#
# The tarball: python.org's, or Debian's `apt-get source --download-only python3.11`
# (its .orig.tar.gz, with a deb-src line in the apt sources). Needs gcc, make and the
# headers CPython's modules build against (libssl-dev, libffi-dev, zlib1g-dev, ...). The
# two builds and the profile run between them take 15-35 minutes on two cores.
set -euo pipefail

tarball=$(realpath "${1:?usage: image_python.sh PYTHON_TARBALL PREFIX}")
prefix=$(realpath -m "${2:?usage: image_python.sh PYTHON_TARBALL PREFIX}")
tree=$(cd "$(dirname "$0")/.." && pwd)

build=$(mktemp -d)
trap 'rm -rf "$build"' EXIT
tar --extract --directory "$build" --strip-components=1 --file "$tarball"
cd "$build"
# docker-library/python's configure line (3.11/slim-*), with a prefix of our own.
./configure --prefix="$prefix" --enable-loadable-sqlite-extensions --enable-optimizations \
    --enable-option-checking=fatal --enable-shared --with-lto --with-ensurepip
extra_cflags=$(dpkg-buildflags --get CFLAGS 2>/dev/null || true)
ldflags=$(dpkg-buildflags --get LDFLAGS 2>/dev/null || true)
make -j "$(nproc)" "EXTRA_CFLAGS=$extra_cflags" "LDFLAGS=${ldflags:--Wl},-rpath=$prefix/lib"
make install

"$prefix/bin/python3" -m venv "$prefix/venv"
# As the image installs it: the wheel built from this tree, with its dependencies.
"$prefix/venv/bin/pip" install --quiet "$tree"
"$prefix/venv/bin/python" -c "import llmservice.router, uvloop, httptools"
echo "the router's interpreter: $prefix/venv/bin/python"
