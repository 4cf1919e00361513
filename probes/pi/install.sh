#!/usr/bin/env bash
# Install or upgrade the netprobe agent on Raspberry Pi OS (or any Debian with systemd).
#
#   sudo probes/pi/install.sh                          # from this checkout
#   sudo probes/pi/install.sh --source netprobe==0.2.0 # or any pip requirement / wheel / folder
#   sudo probes/pi/install.sh --template fleet.yml.tmpl --var site=berlin-3 --var ...
#   sudo probes/pi/install.sh --volatile-journal       # keep the whole journal in RAM (SD cards)
#   sudo probes/pi/install.sh --no-apt                 # use only the Debian packages already there
#
# Nothing is compiled on the Pi: Debian's own builds of the three dependencies that have no armv7
# wheel on PyPI (python3-cffi, python3-psutil, python3-yaml) are installed with apt and seen by
# the venv (--system-site-packages), pinned so pip never replaces them; everything else comes
# as a wheel, from PyPI or from piwheels where Raspberry Pi OS's pip.conf points at it.
# Safe to run again: the venv is upgraded in place, an existing /etc/netprobe/agent.yml is never
# overwritten, and the service is restarted only when the installed version changed.
# Without a running systemd (building an SD-card image in a chroot) the unit is installed and
# enabled but not started. NETPROBE_OPT, NETPROBE_ETC, NETPROBE_STATE and NETPROBE_UNIT_DIR move
# the install locations (default /opt/netprobe, /etc/netprobe, /var/lib/netprobe and
# /etc/systemd/system); the unit itself always uses the defaults.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
checkout="$(cd "$here/../.." && pwd)"
opt="${NETPROBE_OPT:-/opt/netprobe}"
etc="${NETPROBE_ETC:-/etc/netprobe}"
unit_dir="${NETPROBE_UNIT_DIR:-/etc/systemd/system}"
state_dir="${NETPROBE_STATE:-/var/lib/netprobe}"
source_spec="$checkout"
template=""
volatile_journal=false
use_apt=true
render_vars=()

usage() {
    sed -n '2,20p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
    exit "${1:-0}"
}

while [ "$#" -gt 0 ]; do
    case "$1" in
        --source) source_spec="${2:?--source needs a value}"; shift 2 ;;
        --template) template="${2:?--template needs a file}"; shift 2 ;;
        --var) render_vars+=("--var" "${2:?--var needs NAME=VALUE}"); shift 2 ;;
        --volatile-journal) volatile_journal=true; shift ;;
        --no-apt) use_apt=false; shift ;;
        -h|--help) usage 0 ;;
        *) echo "install.sh: unknown option $1" >&2; usage 2 ;;
    esac
done

if [ "$(id -u)" -ne 0 ]; then
    echo "install.sh: run as root (sudo)" >&2
    exit 2
fi

systemd_running() { [ -d /run/systemd/system ]; }

log() { echo "netprobe install: $*"; }

# 1. packages: Python's venv module and Debian's builds of the dependencies without an armv7
#    wheel. Debian's own interpreter, not whatever python3 comes first on PATH: the Debian
#    packages are built for it.
python=/usr/bin/python3
debian_packages=(python3-venv python3-cffi python3-psutil python3-yaml)
if [ "$use_apt" = true ]; then
    missing=()
    for package in "${debian_packages[@]}"; do
        dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" \
            || missing+=("$package")
    done
    if [ "${#missing[@]}" -gt 0 ]; then
        log "installing ${missing[*]}"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
    fi
fi

# 2. the service user: no shell, no home outside its state directory
if ! id -u netprobe >/dev/null 2>&1; then
    log "creating system user netprobe"
    useradd --system --user-group --home-dir "$state_dir" --no-create-home \
        --shell /usr/sbin/nologin --comment "netprobe probe" netprobe
fi

# 3. the venv, upgraded in place, seeing Debian's packages; those are pinned (a constraints
#    file) so that pip picks versions that work with them instead of building newer ones
old_version="$("$opt/bin/netprobe" version 2>/dev/null || echo none)"
if [ ! -x "$opt/bin/python" ]; then
    log "creating venv $opt"
    "$python" -m venv --system-site-packages "$opt"
fi
constraints="$(mktemp)"
trap 'rm -f "$constraints"' EXIT
"$python" "$checkout/probes/docker/debian-pins.py" >"$constraints"
"$opt/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade \
    --upgrade-strategy only-if-needed --constraint "$constraints" "$source_spec"
new_version="$("$opt/bin/netprobe" version)"
log "netprobe $old_version -> $new_version in $opt"

# 4. configuration: rendered from a fleet template, or the home example; never overwritten
install -d -m 0750 -o root -g netprobe "$etc"
if [ ! -e "$etc/agent.yml" ]; then
    if [ -n "$template" ]; then
        probe_id="$("$opt/bin/netprobe" config probe-id --state-dir "$state_dir")"
        chown -R netprobe:netprobe "$state_dir"
        log "rendering $template for probe $probe_id"
        PROBE_ID="$probe_id" "$opt/bin/netprobe" config render "$template" \
            "${render_vars[@]}" --output "$etc/agent.yml"
    else
        install -m 0640 "$checkout/configs/home.yml" "$etc/agent.yml"
        log "wrote $etc/agent.yml from the home example: edit the contract and servers"
    fi
    chown root:netprobe "$etc/agent.yml"
    chmod 0640 "$etc/agent.yml"
else
    log "keeping $etc/agent.yml"
fi

# 5. the unit, and on systemd >= 254 a restart delay that grows instead of a fixed 15 s
install -D -m 0644 "$checkout/probes/systemd/netprobe.service" "$unit_dir/netprobe.service"
systemd_version="$(systemctl --version 2>/dev/null | awk 'NR == 1 { print $2 }')" || true  # none in a chroot
if [ "${systemd_version:-0}" -ge 254 ]; then
    install -d "$unit_dir/netprobe.service.d"
    printf '[Service]\nRestartSteps=8\nRestartMaxDelaySec=15min\n' \
        >"$unit_dir/netprobe.service.d/backoff.conf"
fi

if [ "$volatile_journal" = true ]; then
    install -d /etc/systemd/journald.conf.d
    printf '[Journal]\nStorage=volatile\nRuntimeMaxUse=32M\n' \
        >/etc/systemd/journald.conf.d/netprobe-volatile.conf
    log "journal kept in RAM only (32 MB)"
fi

if systemd_running; then
    systemctl daemon-reload
    [ "$volatile_journal" = true ] && systemctl restart systemd-journald
    systemctl enable --quiet netprobe.service
    if [ "$old_version" = none ] || ! systemctl is-active --quiet netprobe.service; then
        systemctl start netprobe.service
    elif [ "$old_version" != "$new_version" ]; then
        systemctl restart netprobe.service
    fi
    log "service: $(systemctl is-active netprobe.service)"
else
    # what `systemctl enable` does for WantedBy=multi-user.target, without a running systemd
    install -d "$unit_dir/multi-user.target.wants"
    ln -sfn "$unit_dir/netprobe.service" "$unit_dir/multi-user.target.wants/netprobe.service"
    log "systemd is not running here: the service starts on the next boot"
fi
