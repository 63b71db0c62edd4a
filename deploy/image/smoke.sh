#!/usr/bin/env bash
# Runs the image built by `./mvnw -B -Pimage -pl cli -am package -DskipTests` without a container
# engine: unpacks the OCI tar's layers into a directory and runs the image's own entrypoint, user and
# environment there under chroot with /proc mounted, as a container runtime would (the working
# directory is / rather than the image's /tmp: chroot cannot set it). Needs root (chroot, mount) and
# python3.
# Usage: deploy/image/smoke.sh [IMAGE_TAR] [-- MOE ARGS...]   (default args: --version, then demo)
# Exit status: that of the command(s); 3 when this machine cannot run it (not root, no mount rights).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
TAR="cli/target/moe-image.tar"
if [[ $# -gt 0 && "$1" != "--" ]]; then TAR="$1"; shift; fi
[[ "${1:-}" == "--" ]] && shift
[[ -f "$TAR" ]] || { echo "smoke.sh: $TAR not found; build it with ./mvnw -B -Pimage -pl cli -am package -DskipTests" >&2; exit 1; }
[[ $EUID -eq 0 ]] || { echo "smoke.sh: needs root for chroot and mount; nothing run" >&2; exit 3; }

WORK="$(mktemp -d)"
ROOTFS="$WORK/rootfs"
cleanup() { umount "$ROOTFS/proc" 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT
mkdir -p "$WORK/oci" "$ROOTFS"
tar -xf "$TAR" -C "$WORK/oci"

# The manifest's layers in order, and the config's entrypoint, user, working dir and environment.
python3 - "$WORK/oci" > "$WORK/plan" <<'EOF'
import json, sys, shlex
oci = sys.argv[1]
blob = lambda d: f"{oci}/blobs/{d.replace(':', '/')}"
index = json.load(open(f"{oci}/index.json"))
manifest = json.load(open(blob(index["manifests"][0]["digest"])))
config = json.load(open(blob(manifest["config"]["digest"])))["config"]
for layer in manifest["layers"]:
    print("layer", blob(layer["digest"]))
print("user", config.get("User", "0:0"))
for e in config.get("Env", []):
    print("env", shlex.quote(e))
print("entrypoint", " ".join(shlex.quote(a) for a in config["Entrypoint"]))
EOF
layers=0
ENV_ARGS=()
while read -r kind value; do
  case "$kind" in
    layer) tar --warning=no-unknown-keyword -xzf "$value" -C "$ROOTFS"; layers=$((layers + 1)) ;;
    user) USER_SPEC="$value" ;;
    env) ENV_ARGS+=("$(eval echo "$value")") ;;
    entrypoint) eval "ENTRYPOINT=($value)" ;;
  esac
done < "$WORK/plan"
echo "smoke: $layers layers unpacked ($(du -sh "$ROOTFS" | cut -f1)), user $USER_SPEC, entrypoint ${ENTRYPOINT[0]} ... ${ENTRYPOINT[-1]}"
# What a container runtime provides: /proc and the basic device nodes (the JVM seeds SecureRandom
# from /dev/urandom; without it the fallback seed generator takes minutes).
mkdir -p "$ROOTFS/proc" "$ROOTFS/dev"
if ! mount -t proc proc "$ROOTFS/proc" 2>/dev/null; then
  echo "smoke.sh: cannot mount /proc for the image here (needs root with mount rights); nothing run" >&2
  exit 3
fi
while read -r name major minor; do
  mknod -m 666 "$ROOTFS/dev/$name" c "$major" "$minor"
done <<< $'null 1 3\nzero 1 5\nrandom 1 8\nurandom 1 9'
CHROOT="$(command -v chroot)"

run() {
  echo "smoke: moe $*"
  env -i "${ENV_ARGS[@]}" "$CHROOT" --userspec="$USER_SPEC" "$ROOTFS" "${ENTRYPOINT[@]}" "$@"
}
# Help needs no kernels: the entrypoint starts it without the incubator module, so no JDK warning.
help="$(run --help 2>&1)"
if grep -q "incubator" <<< "$help"; then
  echo "smoke.sh: moe --help in the image printed the JDK's incubator warning:" >&2
  head -3 <<< "$help" >&2
  exit 1
fi
grep -q "Usage: moe" <<< "$help" || { echo "smoke.sh: moe --help printed no usage:" >&2; head -5 <<< "$help" >&2; exit 1; }
echo "smoke: moe --help: usage, no incubator warning"
if [[ $# -gt 0 ]]; then
  run "$@"
else
  run --version
  run demo
fi
echo "smoke: PASS"
