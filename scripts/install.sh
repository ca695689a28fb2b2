#!/usr/bin/env bash
# Installs vico as systemd services: the standalone binaries, the units, the
# vico system user and /etc/vico with example configuration.
#
#   deno task compile              # builds dist/manager and dist/runner
#   sudo scripts/install.sh [options]
#
# Options:
#   --prefix DIR   Install the binaries to DIR/bin. Default: /usr/local (the
#                  units name /usr/local/bin; another prefix is written into
#                  the installed units).
#   --root DIR     Install into the file system under DIR (an image, a chroot,
#                  a test) instead of /: every path below is under DIR, the
#                  user goes into DIR/etc/passwd (useradd --root), systemctl
#                  is not called.
#   --dist DIR     Where the binaries are. Default: dist/ of this checkout.
#   --runner NAME  Also create /etc/vico/runner-NAME.env from the example (if
#                  it does not exist) for the vico-runner@NAME service.
#   --dry-run      Print what would be done; change nothing.
#   -h, --help     Show this help.
#
# What it does (again and again the same: files are replaced, configuration
# that exists is kept, the user is made once):
#   PREFIX/bin/manager, PREFIX/bin/runner         (0755)
#   /etc/systemd/system/vico-manager.service, vico-runner@.service (0644)
#   user and group vico (system, home /var/lib/vico, no login shell)
#   /var/lib/vico                                 (0750, vico)
#   /etc/vico/                                    (0755)
#   /etc/vico/runner.env.example, manager.env.example (0644, replaced)
#   /etc/vico/manager.env                         (0640, kept if present)
#   /etc/vico/runner-NAME.env with --runner NAME  (0600: it may hold a join token)
#   systemctl daemon-reload                       (when systemd runs, without --root)
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/.." && pwd)
prefix=/usr/local
root=
dist="$repo/dist"
runner_name=
dry_run=0

usage() {
  sed -n '2,/^set -e/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'
}

die() {
  echo "install.sh: $*" >&2
  exit 1
}

while [[ $# -gt 0 ]]; do
  case $1 in
    --prefix) prefix=${2:?--prefix needs a directory}; shift 2 ;;
    --prefix=*) prefix=${1#*=}; shift ;;
    --root) root=${2:?--root needs a directory}; shift 2 ;;
    --root=*) root=${1#*=}; shift ;;
    --dist) dist=${2:?--dist needs a directory}; shift 2 ;;
    --dist=*) dist=${1#*=}; shift ;;
    --runner) runner_name=${2:?--runner needs a name}; shift 2 ;;
    --runner=*) runner_name=${1#*=}; shift ;;
    --dry-run|-n) dry_run=1; shift ;;
    -h|--help) usage; exit 0 ;;
    *) usage >&2; die "unknown argument: $1" ;;
  esac
done

[[ $prefix == /* ]] || die "--prefix must be an absolute path, got '$prefix'"
if [[ -n $root ]]; then
  [[ $root == /* ]] || root="$(pwd)/$root"
  root=${root%/}
fi
if [[ -n $runner_name && ! $runner_name =~ ^[A-Za-z0-9][A-Za-z0-9_.:-]*$ ]]; then
  die "--runner NAME: letters, digits and _ . : - only (it becomes part of a unit name), got '$runner_name'"
fi

bindir="$prefix/bin"
unitdir=/etc/systemd/system
confdir=/etc/vico
home=/var/lib/vico

# Prints a command (quoted so it can be pasted) and runs it unless --dry-run.
run() {
  local quoted
  printf -v quoted '%q ' "$@"
  echo "+ ${quoted% }"
  if [[ $dry_run -eq 0 ]]; then "$@"; fi
}

# Installs file $1 as $2 (under the root) with mode $3, unless $4 is "keep"
# and the target exists.
put() {
  local src=$1 dest=$root$2 mode=$3 keep=${4:-}
  if [[ $keep == keep && -e $dest ]]; then
    echo "= $dest exists; kept"
    return
  fi
  run install -m "$mode" "$src" "$dest"
}

for bin in manager runner; do
  if [[ ! -x $dist/$bin ]]; then
    msg="$dist/$bin is missing: build it first with 'deno task compile' (or scripts/deno task compile)"
    if [[ $dry_run -eq 1 ]]; then echo "! $msg"; else die "$msg"; fi
  fi
done
if [[ $dry_run -eq 0 && -z $root && $(id -u) -ne 0 ]]; then
  die "run as root (or with --root DIR, or --dry-run)"
fi

# The binaries.
run install -d -m 0755 "$root$bindir"
for bin in manager runner; do
  put "$dist/$bin" "$bindir/$bin" 0755
done

# The units, naming the binaries where they are.
run install -d -m 0755 "$root$unitdir"
for unit in vico-manager.service vico-runner@.service; do
  if [[ $bindir == /usr/local/bin ]]; then
    put "$here/systemd/$unit" "$unitdir/$unit" 0644
  else
    echo "+ sed 's#/usr/local/bin/#$bindir/#' $here/systemd/$unit > $root$unitdir/$unit"
    if [[ $dry_run -eq 0 ]]; then
      sed "s#/usr/local/bin/#$bindir/#" "$here/systemd/$unit" >"$root$unitdir/$unit"
      chmod 0644 "$root$unitdir/$unit"
    fi
  fi
done

# The user jobs run as, with a home of its own.
nologin=/usr/sbin/nologin
[[ -x $root$nologin ]] || nologin=/bin/false
useradd_root=()
[[ -n $root ]] && useradd_root=(--root "$root")
if [[ -n $root && ! -f $root/etc/passwd ]]; then
  echo "! $root/etc/passwd does not exist: create the system user vico (home $home) there yourself"
elif grep -q '^vico:' "$root/etc/passwd" 2>/dev/null; then
  echo "= user vico exists; kept"
else
  run useradd "${useradd_root[@]}" --system --user-group --home-dir "$home" --no-create-home \
    --shell "$nologin" --comment "vico runner and manager" vico
fi
run install -d -m 0755 "$root/var/lib"
run install -d -m 0750 "$root$home"
if [[ -z $root ]]; then
  run chown vico:vico "$home"
else
  # The owner as $root/etc/passwd has it (the host's may differ, or lack vico).
  uid_gid=$(awk -F: '$1 == "vico" { print $3 ":" $4 }' "$root/etc/passwd" 2>/dev/null || true)
  if [[ -n $uid_gid ]]; then
    run chown "$uid_gid" "$root$home"
  elif [[ $dry_run -eq 1 && -f $root/etc/passwd ]]; then
    echo "+ chown vico:vico $root$home   (as $root/etc/passwd will have it)"
  else
    echo "! no user vico in $root/etc/passwd: $root$home stays owned by $(id -un)"
  fi
fi

# Configuration.
run install -d -m 0755 "$root$confdir"
put "$here/systemd/runner.env.example" "$confdir/runner.env.example" 0644
put "$here/systemd/manager.env.example" "$confdir/manager.env.example" 0644
put "$here/systemd/manager.env.example" "$confdir/manager.env" 0640 keep
if [[ -n $runner_name ]]; then
  put "$here/systemd/runner.env.example" "$confdir/runner-$runner_name.env" 0600 keep
fi

if [[ -z $root && -d /run/systemd/system ]]; then
  run systemctl daemon-reload
fi

name=${runner_name:-NAME}
cat <<EOF

Installed${root:+ under $root}$([[ $dry_run -eq 1 ]] && echo " (dry run: nothing was changed)"). Next steps:

  A runner (one per configuration NAME):
EOF
if [[ -z $runner_name ]]; then
  echo "    cp $confdir/runner.env.example $confdir/runner-NAME.env && chmod 600 $confdir/runner-NAME.env"
fi
cat <<EOF
    edit $confdir/runner-$name.env       (VICO_MANAGER, VICO_WORKERS, the join token)
    systemctl enable --now vico-runner@$name   (waits until it has joined its manager; --no-block does not)
    systemctl status vico-runner@$name    journalctl -u vico-runner@$name

  The manager (one run of a job list):
    edit $confdir/manager.env            (VICO_JOBS, VICO_HOST)
    systemctl start vico-manager         its join token: $home/manager/join-token
EOF
