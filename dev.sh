#!/usr/bin/env bash
# The two commands of the README, for people and CI alike.
#
#   ./dev.sh run [STACKPROBE ARGS...]   set up .venv, run the exporter (embedded default config
#                                       unless --config.file is given) on :18947
#   ./dev.sh test [PYTEST ARGS...]      set up .venv, install missing servers and tools (Debian
#                                       packages, when root), check generated files, run the suite
#   ./dev.sh bench                      set up, then run the benchmarks in bench/ (prints figures)
set -euo pipefail
cd "$(dirname "$0")"

VENV=${STACKPROBE_VENV:-.venv}

log() { printf '[dev.sh] %s\n' "$*" >&2; }

is_root() { [ "$(id -u)" = 0 ]; }

apt_install() {
    # Only as root, and only what is missing; a non-root user is told what to install instead.
    if ! is_root; then
        log "missing: $* (install them with: sudo apt-get install $*); tests needing them will say they are skipped"
        return 0
    fi
    log "installing Debian packages: $*"
    export DEBIAN_FRONTEND=noninteractive
    if [ -z "$(find /var/lib/apt/lists -name '*Packages*' -mmin -1440 2>/dev/null | head -n1)" ]; then
        apt-get update -qq
    fi
    apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

ensure_python() {
    if python3 -c 'import sys, venv, ensurepip; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
        return 0
    fi
    apt_install python3 python3-venv python3-pip
    python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))' || { log "Python >= 3.11 is required"; exit 1; }
}

ensure_venv() {
    ensure_python
    [ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
    # Reinstall only when the dependency list changed: a warm `./dev.sh test` starts at once.
    local stamp="$VENV/.stackprobe-deps" want
    want=$(sha256sum pyproject.toml | cut -d' ' -f1)
    if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
        log "installing stackprobe and its test dependencies into $VENV"
        "$VENV/bin/pip" install -q --upgrade pip
        "$VENV/bin/pip" install -q -e '.[test]'
        echo "$want" > "$stamp"
    fi
}

ensure_system_tools() {
    # binary -> Debian package; servers the tests start privately, and the Prometheus tools.
    local missing=() pair bin pkg
    for pair in mariadbd:mariadb-server redis-server:redis-server promtool:prometheus \
                amtool:prometheus-alertmanager chromium:chromium vmagent:victoria-metrics; do
        bin=${pair%%:*} pkg=${pair#*:}
        command -v "$bin" >/dev/null 2>&1 || [ -x "/usr/sbin/$bin" ] || missing+=("$pkg")
    done
    if [ ${#missing[@]} -gt 0 ]; then
        apt_install "${missing[@]}"
    fi
}

cmd=${1:-}
shift || true
case "$cmd" in
    run)
        ensure_venv
        exec "$VENV/bin/stackprobe" run "$@"
        ;;
    test)
        ensure_venv
        ensure_system_tools
        log "gen-rules check: the committed generated files must match the catalogue"
        "$VENV/bin/gen-rules" check
        exec "$VENV/bin/pytest" "$@"
        ;;
    bench)
        ensure_venv
        ensure_system_tools
        exec "$VENV/bin/python" bench/bench.py "$@"
        ;;
    *)
        sed -n '2,8p' "$0" | sed 's/^# \{0,1\}//'
        exit 2
        ;;
esac
