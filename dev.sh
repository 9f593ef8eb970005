#!/usr/bin/env bash
# The two commands of the README, for people and CI alike.
#
#   ./dev.sh run [STACKPROBE ARGS...]   set up .venv, run the exporter (embedded default config
#                                       unless --config.file is given) on :18947
#   ./dev.sh test [PYTEST ARGS...]      set up .venv, install missing servers and tools (Debian
#                                       packages, when root), check generated files, run the suite
#   ./dev.sh bench [--only PART]...     set up, install the Go exporters it compares with (Debian
#                                       packages, when root), run bench/bench.py (prints figures)
#   ./dev.sh bench soak                 the soak: 5,000 scrapes, 200 SIGHUPs (half hostile)
#   ./dev.sh lock                       re-pin constraints.txt to what .venv has (after changing
#                                       pyproject.toml's dependencies; tests/test_lock.py checks it)
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
    # Reinstall only when the dependencies or their pins changed: a warm `./dev.sh test` starts at
    # once. constraints.txt pins every package, so every machine installs the same versions.
    local stamp="$VENV/.stackprobe-deps" want
    want=$(cat pyproject.toml constraints.txt | sha256sum | cut -d' ' -f1)
    if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
        log "installing stackprobe and its test dependencies (pinned by constraints.txt) into $VENV"
        "$VENV/bin/pip" install -q --upgrade pip
        "$VENV/bin/pip" install -q -c constraints.txt -e '.[test]'
        echo "$want" > "$stamp"
    fi
}

write_lock() {
    # The installed versions of stackprobe[test]'s whole dependency tree, nothing else in the venv.
    "$VENV/bin/python" - > constraints.txt <<'PY'
from importlib.metadata import PackageNotFoundError, distribution
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

pins, todo = {}, [("stackprobe", frozenset({"test"}))]
while todo:
    name, extras = todo.pop()
    dist = distribution(name)
    for text in dist.requires or ():
        req = Requirement(text)
        if req.marker and not any(req.marker.evaluate({"extra": e}) for e in extras | {""}):
            continue
        key = canonicalize_name(req.name)
        try:
            version = distribution(req.name).version
        except PackageNotFoundError:
            continue  # a dependency for another platform or Python version
        if key not in pins or req.extras:
            pins[key] = version
            todo.append((req.name, frozenset(req.extras)))
print("# Pinned versions of stackprobe[test]'s dependency tree, used by ./dev.sh (pip install -c).")
print("# Regenerate with ./dev.sh lock after changing pyproject.toml; tests/test_lock.py checks it.")
for key in sorted(pins):
    print(f"{key}=={pins[key]}")
PY
    log "constraints.txt: $(grep -vc '^#' constraints.txt) pinned packages"
}

ensure_system_tools() {
    # binary -> Debian package; servers the tests start privately, and the Prometheus tools.
    local missing=() pair bin pkg
    for pair in mariadbd:mariadb-server redis-server:redis-server promtool:prometheus \
                amtool:prometheus-alertmanager chromium:chromium vmagent:victoria-metrics \
                vmalert:victoria-metrics; do
        bin=${pair%%:*} pkg=${pair#*:}
        command -v "$bin" >/dev/null 2>&1 || [ -x "/usr/sbin/$bin" ] || missing+=("$pkg")
    done
    if [ ${#missing[@]} -gt 0 ]; then
        apt_install "${missing[@]}"
    fi
}

ensure_bench_peers() {
    # The Go exporters ./dev.sh bench measures stackprobe against, from Debian.
    local missing=() pkg
    for pkg in prometheus-mysqld-exporter prometheus-redis-exporter prometheus-blackbox-exporter; do
        command -v "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
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
        log "gen-rules check: the committed generated files must match the catalogue, the playbooks their ledgers"
        "$VENV/bin/gen-rules" check
        exec "$VENV/bin/pytest" "$@"
        ;;
    bench)
        ensure_venv
        ensure_system_tools
        [ "${1:-}" = soak ] && { shift; exec "$VENV/bin/python" bench/soak.py "$@"; }  # ./dev.sh bench soak
        ensure_bench_peers
        exec "$VENV/bin/python" bench/bench.py "$@"
        ;;
    lock)
        ensure_python
        [ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
        "$VENV/bin/pip" install -q -e '.[test]'
        write_lock
        ;;
    *)
        sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'
        exit 2
        ;;
esac
