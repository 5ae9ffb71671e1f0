#!/usr/bin/env bash
# Install mailpair on a Debian-like server. Run as root; running it again
# changes only what is missing or wrong, and never overwrites the configuration.
#
#   bash deploy/install.sh [--prefix DIR] [--etc DIR] [--spool DIR] [--mail DIR]
#                          [--systemd-dir DIR | --no-systemd] [--no-venv]
#                          [--fail2ban-dir DIR | --no-fail2ban]
#
# It creates the system users, the directories with their owners and modes,
# the virtual environment with mtad, mdad, mta-ctl and mda-ctl, a starting
# configuration, empty users and aliases files, the two systemd units and,
# where fail2ban is installed, its filter and jail for mailpair. The venv is built
# on /usr/bin/python3 (PYTHON=/path/to/python3 for another), which the children's
# system users must be able to run: an interpreter under root's home is refused.
set -euo pipefail
umask 022  # the venv and the configuration must be readable by the children's users
shopt -u patsub_replacement 2>/dev/null || true  # '&' in a path stays an '&'

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

# Defaults: the paths in deploy/mailpair.toml and deploy/*.service.
DEF_PREFIX=/opt/mailpair
DEF_ETC=/etc/mailpair
DEF_SPOOL=/var/spool/mailpair
DEF_MAIL=/var/vmail

PREFIX=$DEF_PREFIX
ETC=$DEF_ETC
SPOOL=$DEF_SPOOL
MAIL=$DEF_MAIL
SYSTEMD_DIR=/etc/systemd/system
DO_SYSTEMD=1
DO_VENV=1
FAIL2BAN_DIR=/etc/fail2ban
DO_FAIL2BAN=1

MTA_USER=mailpair      # mtad's smtp (the Internet-facing process)
QUEUE_USER=mailpair-queue  # mtad's queue: owns the spool
RELAY_USER=mailpair-relay  # mtad's relay: SMTP out, the only client of the LMTP socket
MDA_USER=vmail         # mdad's lmtp (imap, pop3)
LOGIN_USER=mailpair-login  # mdad's IMAP and POP3 login processes: no access to any mail
AUTH_USER=mailpair-auth  # mtad's lookup and mdad's auth: the only readers of users/aliases
WEB_USER=mailpair-web  # mtad's autoconfig (HTTPS): no access to mail, spool or users

usage() {
    sed -n '2,14p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
}

die() {
    echo "install.sh: $*" >&2
    exit 1
}

while [[ $# -gt 0 ]]; do
    opt=$1
    case $opt in
        --prefix|--etc|--spool|--mail|--systemd-dir|--fail2ban-dir)
            [[ $# -ge 2 ]] || die "$opt needs a directory"
            value=$2
            shift 2
            ;;
        --*=*)
            value=${opt#*=}
            opt=${opt%%=*}
            shift
            ;;
        --no-systemd) DO_SYSTEMD=0; shift; continue ;;
        --no-venv) DO_VENV=0; shift; continue ;;
        --no-fail2ban) DO_FAIL2BAN=0; shift; continue ;;
        -h|--help) usage; exit 0 ;;
        *) usage >&2; die "unknown option: $opt" ;;
    esac
    # Paths go into TOML strings and unit files (split on spaces, '%' a specifier).
    [[ $value == /* ]] || die "$opt: expected an absolute path, got '$value'"
    [[ $value =~ ^[A-Za-z0-9._/+@:-]+$ ]] \
        || die "$opt: '$value' has characters this script does not handle (spaces, quotes, %)"
    value=$(realpath -m -- "$value")
    case $opt in
        --prefix) PREFIX=$value ;;
        --etc) ETC=$value ;;
        --spool) SPOOL=$value ;;
        --mail) MAIL=$value ;;
        --systemd-dir) SYSTEMD_DIR=$value ;;
        --fail2ban-dir) FAIL2BAN_DIR=$value ;;
        *) usage >&2; die "unknown option: $opt" ;;
    esac
done

[[ $EUID -eq 0 ]] || die "run as root: it creates system users and chowns directories"

changes=0
did() {
    echo "  $*"
    changes=$((changes + 1))
}

# -- users and groups -------------------------------------------------------------

NOLOGIN=/usr/sbin/nologin
[[ -x $NOLOGIN ]] || NOLOGIN=/sbin/nologin
[[ -x $NOLOGIN ]] || NOLOGIN=/bin/false

ensure_group() {
    getent group "$1" >/dev/null && return
    groupadd --system "$1"
    did "created the system group $1"
}

ensure_user() {  # NAME: a system user whose primary group has its name
    ensure_group "$1"
    getent passwd "$1" >/dev/null && return
    useradd --system --no-create-home --home-dir / --shell "$NOLOGIN" --gid "$1" "$1"
    did "created the system user $1"
}

# -- files and directories ------------------------------------------------------------

# Owner, group and mode right, else fixed: stat's %a has no leading zeros.
ensure_owner_mode() {  # PATH OWNER GROUP MODE
    local want have
    want="$2:$3 $(printf '%o' "$((8#$4))")"
    have=$(stat -L -c '%U:%G %a' -- "$1")
    [[ $have == "$want" ]] && return
    chown -- "$2:$3" "$1"
    chmod -- "$4" "$1"
    did "fixed $1: was $have, now $want"
}

ensure_dir() {  # PATH OWNER GROUP MODE
    if [[ -d $1 ]]; then
        ensure_owner_mode "$@"
        return
    fi
    [[ -e $1 || -L $1 ]] && die "$1 exists and is not a directory"
    install -d -o "$2" -g "$3" -m "$4" -- "$1"
    did "created $1 ($2:$3 $4)"
}

ensure_file() {  # PATH OWNER GROUP MODE: an empty file unless it exists
    if [[ -e $1 ]]; then
        [[ -f $1 ]] || die "$1 exists and is not a file"
        ensure_owner_mode "$@"
        return
    fi
    install -o "$2" -g "$3" -m "$4" /dev/null "$1"
    did "created $1 (empty, $2:$3 $4)"
}

# Write text to PATH (root:root MODE) unless it already holds exactly that.
put_file() {  # PATH MODE TEXT
    if [[ -f $1 ]] && [[ $(cat -- "$1") == "$3" ]]; then
        ensure_owner_mode "$1" root root "$2"
        return 1
    fi
    local tmp
    tmp=$(mktemp "$1.XXXXXX")
    printf '%s\n' "$3" >"$tmp"
    chown root:root "$tmp"
    chmod "$2" "$tmp"
    mv -f -- "$tmp" "$1"
    did "wrote $1"
}

# The sample's default paths replaced by the ones given on the command line.
rewrite_paths() {  # TEXT
    local text=$1
    text=${text//"/opt/mailpair/"/"$PREFIX/"}
    text=${text//"$DEF_ETC/"/"$ETC/"}
    text=${text//"$DEF_SPOOL"/"$SPOOL"}
    text=${text//"$DEF_MAIL"/"$MAIL"}
    printf '%s' "$text"
}

echo "mailpair: installing from $REPO"

# -- the interpreter --------------------------------------------------------------

# Started as root, the daemons run their children as system users, who must be
# able to run the venv's interpreter: a python3 under root's home (pyenv) is
# not. The system's is preferred, as the Makefile does; PYTHON= chooses another.
NOBODY=65534  # a user of no group, as the children's users are for this purpose

# Whether a user of no group can run the interpreter PATH. Through sh: setpriv
# keeps root's capabilities up to its own execve, which would let it pass
# directories that the children could not.
runs_unprivileged() {  # PATH
    setpriv --reuid="$NOBODY" --regid="$NOBODY" --clear-groups -- \
        /bin/sh -c 'exec "$0" -c "import sys"' "$1" >/dev/null 2>&1
}

# " /dir is mode 700" for the first directory on PATH's way (and its
# target's) that others may not search; empty when none is to blame.
blocked_at() {  # PATH
    local path dir
    for path in "$1" "$(realpath -m -- "$1")"; do
        dir=${path%/*}
        while [[ -n $dir ]]; do
            if [[ -d $dir ]] && (( 8#$(stat -L -c '%a' -- "$dir") % 2 == 0 )); then
                echo " $dir is mode $(stat -L -c '%a' -- "$dir") (owner $(stat -L -c '%U' -- "$dir"))"
                return
            fi
            dir=${dir%/*}
        done
    done
}

if [[ $DO_VENV -eq 1 ]]; then
    command -v setpriv >/dev/null || die "setpriv not found: apt-get install util-linux"
    if [[ -n ${PYTHON:-} ]]; then
        PY=$PYTHON
        PY_FROM="PYTHON=$PYTHON"
    elif [[ -x /usr/bin/python3 ]]; then
        PY=/usr/bin/python3
        PY_FROM="the system's python3"
    else
        PY=python3
        PY_FROM="python3 on PATH"
    fi
    command -v "$PY" >/dev/null || die "$PY not found: apt-get install python3 python3-venv"
    "$PY" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
        || die "$PY is older than 3.11"
    # What the venv will link to: a pyenv shim or a venv's python stand for another.
    PY_BASE=$("$PY" -c 'import sys; print(getattr(sys, "_base_executable", sys.executable))')
    if ! runs_unprivileged "$PY_BASE"; then
        die "$PY_BASE ($PY_FROM) cannot be run by the system users that mtad's and mdad's children run as:$(blocked_at "$PY_BASE")
  A venv built on it would leave the daemons unable to start their children.
  Install the system's interpreter (apt-get install python3 python3-venv), or give one
  that every user may run: PYTHON=/usr/local/bin/python3.12 bash deploy/install.sh"
    fi
    echo "  interpreter: $PY_BASE ($PY_FROM)"
fi

ensure_user "$MTA_USER"
ensure_user "$QUEUE_USER"
ensure_user "$RELAY_USER"
ensure_user "$MDA_USER"
ensure_user "$LOGIN_USER"
ensure_user "$AUTH_USER"
ensure_user "$WEB_USER"

ensure_dir "$PREFIX" root root 0755
ensure_dir "$ETC" root root 0755
ensure_dir "$ETC/tls" root root 0755
# DKIM keys: the relay signs, so its group reads them; nobody else may.
ensure_dir "$ETC/dkim" root "$RELAY_USER" 0750
# Only the root parents read the key; they hand it to their children.
[[ -f $ETC/tls/key.pem ]] && ensure_owner_mode "$ETC/tls/key.pem" root root 0600
[[ -f $ETC/tls/cert.pem ]] && ensure_owner_mode "$ETC/tls/cert.pem" root root 0644
ensure_dir "$SPOOL" "$QUEUE_USER" "$QUEUE_USER" 0700
for sub in incoming queue corrupt; do
    ensure_dir "$SPOOL/$sub" "$QUEUE_USER" "$QUEUE_USER" 0700
done
ensure_dir "$MAIL" "$MDA_USER" "$MDA_USER" 0700
# /run/mailpair is made by systemd (RuntimeDirectory=), its run/mta and
# run/mda by the daemons themselves.

CONF=$ETC/mailpair.toml
if [[ -e $CONF ]]; then
    mode=$(stat -L -c '%a' -- "$CONF")
    if [[ $mode != 644 ]]; then
        echo "  note: $CONF has mode $mode (kept); the children re-read it, 0644 is expected"
    fi
else
    put_file "$CONF" 0644 "$(rewrite_paths "$(cat -- "$REPO/deploy/mailpair.toml")")"
fi
ensure_file "$ETC/users" root "$AUTH_USER" 0640
ensure_file "$ETC/aliases" root "$AUTH_USER" 0640

# Documentation= of the units points here.
put_file "$PREFIX/README.md" 0644 "$(cat -- "$REPO/README.md")" || true

# -- the virtual environment ------------------------------------------------------------

if [[ $DO_VENV -eq 1 ]]; then
    if [[ ! -e $PREFIX/venv ]]; then
        "$PY" -m venv "$PREFIX/venv" || die "$PY -m venv failed: apt-get install python3-venv"
        did "created the virtual environment $PREFIX/venv on $PY_BASE"
    elif ! runs_unprivileged "$PREFIX/venv/bin/python"; then
        # Built by an earlier install on an interpreter the children can't run
        # (or one since removed).
        "$PY" -m venv --clear "$PREFIX/venv" || die "$PY -m venv failed"
        did "rebuilt the virtual environment $PREFIX/venv on $PY_BASE (the system users could not run its interpreter)"
    fi
    runs_unprivileged "$PREFIX/venv/bin/python" \
        || die "the system users cannot run $PREFIX/venv/bin/python:$(blocked_at "$PREFIX/venv/bin/python")
  $PREFIX and the directories above it must be searchable by everyone (chmod o+x)"
    # Built from a copy: setuptools writes build/ and *.egg-info next to the
    # sources, which would leave root-owned files in the checkout.
    SRC=$(mktemp -d)
    trap 'rm -rf -- "$SRC"' EXIT
    tar -C "$REPO" --exclude=./.git --exclude=./.venv --exclude=./var --exclude=./build \
        --exclude='*.egg-info' --exclude=__pycache__ -cf - . | tar -C "$SRC" -xf -
    "$PREFIX/venv/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade "$SRC"
    did "installed mailpair from $REPO into $PREFIX/venv"
fi

# -- systemd ---------------------------------------------------------------------

if [[ $DO_SYSTEMD -eq 1 ]]; then
    ensure_dir "$SYSTEMD_DIR" root root 0755
    units_changed=0
    for unit in mda.service mta.service; do
        if put_file "$SYSTEMD_DIR/$unit" 0644 "$(rewrite_paths "$(cat -- "$REPO/deploy/$unit")")"
        then
            units_changed=1
        fi
    done
    if [[ $units_changed -eq 1 ]]; then
        if [[ -d /run/systemd/system ]]; then
            systemctl daemon-reload
            did "ran systemctl daemon-reload"
        else
            echo "  systemd is not running here: skipped systemctl daemon-reload"
        fi
    fi
fi

# -- fail2ban --------------------------------------------------------------------

# Only where fail2ban is installed, and never over a copy that is there: the
# admin may have edited it (jail.d/mailpair.local is the place for changes).
if [[ $DO_FAIL2BAN -eq 1 && -d $FAIL2BAN_DIR ]]; then
    f2b_added=0
    for conf in filter.d/mailpair.conf jail.d/mailpair.conf; do
        dest=$FAIL2BAN_DIR/$conf
        [[ -e $dest ]] && continue
        if [[ ! -d ${dest%/*} ]]; then
            install -d -o root -g root -m 0755 -- "${dest%/*}"
            did "created ${dest%/*}"
        fi
        put_file "$dest" 0644 "$(cat -- "$REPO/deploy/fail2ban/$conf")" || true
        f2b_added=1
    done
    if [[ $f2b_added -eq 1 ]]; then
        echo "  fail2ban: run 'systemctl reload fail2ban' to start the mailpair jail"
    fi
fi

if [[ $changes -eq 0 ]]; then
    echo "  nothing to change: everything was in place"
fi

CTL="$PREFIX/venv/bin/mda-ctl"
[[ $ETC == "$DEF_ETC" ]] || CTL="$CTL -c $CONF"
cat <<EOF

Next steps:
  1. Set hostname and domains in $CONF.
  2. Put the certificate chain in $ETC/tls/cert.pem (0644) and its key in
     $ETC/tls/key.pem (root:root 0600).
  3. Add users and aliases:
       $CTL user add alice@example.org
       $CTL alias add postmaster@example.org alice@example.org
  4. Check it all: $CTL check
  5. Start both daemons (mda first; mta wants it):
       systemctl enable --now mda mta
EOF
