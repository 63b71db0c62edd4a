#!/usr/bin/env bash
# Builds the base file system of the moe image (Jib adds it to an empty `scratch` base, so the image
# needs no registry to build from):
#   /opt/java       a jlink'd Java runtime from the JDK running the build: java.se, the vector module,
#                   and the jdk.* modules the dependencies use (httpserver: /metrics; net: Hazelcast's
#                   keep-alive options; management, unsupported, naming.dns, zipfs, jfr for operators)
#   /lib, /lib64    the C libraries that runtime and the native libraries inside the dependency jars
#                   (gRPC's epoll transport, DJL tokenizers, JCuda) link against, copied from the build
#                   machine (glibc), found with ldd; libcuda itself comes from the NVIDIA runtime
#   /usr/lib/locale the C.UTF-8 locale (LANG in the image), so the JVM writes UTF-8 to stdout and stderr
#                   (without a locale it falls back to ASCII and prints generated text as '?')
#   /etc            passwd/group with the unprivileged user 65532 (moe), nsswitch.conf
#   /tmp            world-writable with the sticky bit (the chart mounts an emptyDir over it)
#   /opt/moe/bin    moe-launch, the entrypoint (deploy/image/moe-launch.c, built here with cc)
# Usage: deploy/image/rootfs.sh OUT_DIR DEPENDENCY_JAR_DIR
# Needs a Linux x86_64 build machine with glibc (ldd), a C compiler (cc) and a JDK 25 in JAVA_HOME.
set -euo pipefail
OUT="${1:?usage: rootfs.sh OUT_DIR DEPENDENCY_JAR_DIR}"
JARS="${2:?usage: rootfs.sh OUT_DIR DEPENDENCY_JAR_DIR}"
JAVA_HOME="${JAVA_HOME:?set JAVA_HOME to a JDK 25}"
[[ "$(uname -s)-$(uname -m)" == "Linux-x86_64" ]] || { echo "rootfs.sh: builds linux/amd64 images on a Linux x86_64 machine only" >&2; exit 1; }
command -v ldd >/dev/null || { echo "rootfs.sh: needs ldd (glibc)" >&2; exit 1; }

rm -rf "$OUT"
mkdir -p "$OUT/opt" "$OUT/etc" "$OUT/tmp"
chmod 1777 "$OUT/tmp"

echo "rootfs: jlink runtime -> $OUT/opt/java"
"$JAVA_HOME/bin/jlink" \
  --add-modules java.se,jdk.incubator.vector,jdk.unsupported,jdk.management,jdk.httpserver,jdk.net,jdk.naming.dns,jdk.zipfs,jdk.crypto.ec,jdk.jfr \
  --strip-debug --no-header-files --no-man-pages --compress=zip-6 \
  --output "$OUT/opt/java"

# Native libraries the jars extract at run time, for linux x86_64 only.
NATIVE="$(mktemp -d)"
trap 'rm -rf "$NATIVE"' EXIT
for jar in "$JARS"/*.jar; do
  for entry in $(unzip -Z1 "$jar" 2>/dev/null | grep -E '\.so(\.[0-9]+)*$' | grep -iE 'x86_64|amd64|x86-64' || true); do
    unzip -q -j -o "$jar" "$entry" -d "$NATIVE"
  done
done
echo "rootfs: native libraries in the jars: $(ls "$NATIVE" | tr '\n' ' ')"

# The closure of shared libraries they need, as ldd resolves them on this machine.
# The runtime's desktop and sound libraries are left out of the scan: the server runs headless and
# never loads them (they would pull in X11 and ALSA). Libraries inside the runtime resolve to it.
libs="$(find "$OUT/opt/java" "$NATIVE" -name '*.so*' -type f \
    ! -name 'libawt_xawt.so' ! -name 'libjawt.so' ! -name 'libsplashscreen.so' ! -name 'libjsound.so' -print0 \
  | xargs -0 ldd 2>/dev/null | awk '/=> \// { print $3 } /^\t\/lib/ { print $1 }' \
  | grep -v -e "^$OUT/" -e "^$NATIVE/" | sort -u)"
for lib in $libs /lib64/ld-linux-x86-64.so.2; do
  real="$(readlink -f "$lib")"
  dest="$OUT$lib"
  mkdir -p "$(dirname "$dest")"
  cp "$real" "$dest"
done
echo "rootfs: $(echo "$libs" | wc -w) system libraries: $(echo "$libs" | xargs -n1 basename | tr '\n' ' ')"

# glibc loads C.UTF-8 from files (it is not built in); Debian and Ubuntu ship it as C.utf8.
LOCALE=/usr/lib/locale/C.utf8
[[ -f "$LOCALE/LC_CTYPE" ]] || { echo "rootfs.sh: needs the C.UTF-8 locale at $LOCALE (Debian/Ubuntu: libc-bin)" >&2; exit 1; }
mkdir -p "$OUT/usr/lib/locale"
cp -r "$LOCALE" "$OUT/usr/lib/locale/"
echo "rootfs: locale C.UTF-8 ($(du -sh "$LOCALE" | cut -f1))"

# The entrypoint: the image has no shell, so a small C launcher does what the ./moe script does for
# help and version requests, leaving the incubator module (and the JDK's warning about it) out.
command -v cc >/dev/null || { echo "rootfs.sh: needs a C compiler (cc) for deploy/image/moe-launch.c" >&2; exit 1; }
mkdir -p "$OUT/opt/moe/bin"
cc -std=c11 -O2 -Wall -Wextra -Werror -D_POSIX_C_SOURCE=200809L -o "$OUT/opt/moe/bin/moe-launch" "$(dirname "$0")/moe-launch.c"
echo "rootfs: entrypoint /opt/moe/bin/moe-launch"

cat > "$OUT/etc/passwd" <<'EOF'
root:x:0:0:root:/root:/sbin/nologin
moe:x:65532:65532:moe:/tmp:/sbin/nologin
EOF
cat > "$OUT/etc/group" <<'EOF'
root:x:0:
moe:x:65532:
EOF
echo "hosts: files dns" > "$OUT/etc/nsswitch.conf"
du -sh "$OUT" | sed 's/^/rootfs: /'
