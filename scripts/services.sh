# Shared by the project's scripts: makes sure the services that the tests
# talk to are installed and running. Every function is idempotent: it uses
# what is there, installs what is missing and starts what is stopped.
# Source it; do not run it.

log() { printf '==> %s\n' "$*" >&2; }

# PostgreSQL on 127.0.0.1:5432 with trust auth for user postgres.
ensure_postgres() {
    if pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; then
        return
    fi
    if ! command -v pg_ctlcluster >/dev/null; then
        log "installing PostgreSQL (Debian package)"
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q postgresql >/dev/null
    fi
    local version
    version=$(ls /etc/postgresql | sort -V | tail -1)
    local hba="/etc/postgresql/$version/main/pg_hba.conf"
    # The tests connect over TCP as postgres without a password.
    if ! grep -q '^host all postgres 127.0.0.1/32 trust' "$hba"; then
        sed -i '1i host all postgres 127.0.0.1/32 trust' "$hba"
    fi
    log "starting PostgreSQL $version"
    pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
    for _ in $(seq 1 60); do
        pg_isready -q -h 127.0.0.1 -p 5432 && return
        sleep 0.5
    done
    log "PostgreSQL did not start on 127.0.0.1:5432"
    return 1
}

# Tansu, a Kafka-protocol broker, for the log pipeline's tests. Each test
# starts its own broker on a free loopback port; this only makes sure the
# binary is there (building it takes about 8 minutes, so an installed one is
# reused).
ensure_tansu() {
    if command -v tansu >/dev/null; then
        return
    fi
    log "installing tansu (cargo install; about 8 minutes)"
    cargo install tansu --locked --features dynostore,postgres
}

# moto's S3 server, for the object storage tests, pyarrow, the standard
# Parquet reader the pipeline tests read compacted files back with, and
# PyYAML, which reads compose.yaml for its test. Each
# test starts its own server on a free loopback port; this only makes sure
# they are installed.
ensure_moto() {
    if command -v moto_server >/dev/null && python3 -c 'import boto3, pyarrow, yaml' 2>/dev/null; then
        return
    fi
    log "installing moto[server] (pip)"
    python3 -m pip install --quiet 'moto[server]' boto3 pyarrow pyyaml
}

# aiosmtpd, the SMTP server the notification tests send alert emails to.
# Each test starts its own on a free loopback port, writing what it gets to
# a Maildir; this only makes sure it is installed.
ensure_aiosmtpd() {
    if python3 -c 'import aiosmtpd' 2>/dev/null; then
        return
    fi
    log "installing aiosmtpd (pip)"
    python3 -m pip install --quiet aiosmtpd
}

# Drops the databases earlier test runs left behind (each test makes one,
# named rtmas_t_…). Run before the suite, not during it.
drop_test_databases() {
    local names db
    names=$(psql -h 127.0.0.1 -U postgres -Atc \
        "SELECT datname FROM pg_database WHERE datname LIKE 'rtmas\_t\_%'")
    local n=0
    for db in $names; do
        dropdb -h 127.0.0.1 -U postgres --if-exists "$db"
        n=$((n + 1))
    done
    log "dropped $n test database(s) left by earlier runs"
}

# Debian's Chromium, which the browser tests drive headless through
# playwright-core (Playwright's own browser downloads are not reachable from
# these machines, so the tests launch /usr/bin/chromium).
ensure_chromium() {
    if [ -x /usr/bin/chromium ]; then
        return
    fi
    log "installing Chromium (Debian package)"
    if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null; then
        # A machine that has never fetched the package lists has none to
        # install from.
        apt-get update -q >/dev/null
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null
    fi
    if [ ! -x /usr/bin/chromium ]; then
        log "Chromium was installed but /usr/bin/chromium is missing"
        return 1
    fi
}

# The browser tests' Node packages (playwright-core), exactly as locked in
# tests/browser/package-lock.json.
ensure_browser_tests() {
    if [ -d tests/browser/node_modules/playwright-core ]; then
        return
    fi
    if ! command -v npm >/dev/null; then
        log "npm is missing: the browser tests need Node.js 18 or later and npm"
        return 1
    fi
    log "installing the browser tests' Node packages (npm ci)"
    (cd tests/browser && npm ci --no-audit --no-fund)
}
