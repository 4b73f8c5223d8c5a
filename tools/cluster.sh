#!/usr/bin/env bash
# Start, stop and inspect the scale-out engines of issue 11 on this one machine, from Debian
# packages: a PostgreSQL 15 primary with two streaming hot standbys (the first synchronous),
# PgBouncer in transaction mode in front of the primary, and a three-node MariaDB Galera cluster.
#
#   tools/cluster.sh start  [pg|pgbouncer|galera|all]   (default all; what runs already is kept)
#   tools/cluster.sh stop   [pg|pgbouncer|galera|all]   (by PID; the data stays)
#   tools/cluster.sh status                              (each part: up or down; exit 1 if any down)
#   tools/cluster.sh destroy                             (stop all, then delete the cluster dir)
#
# Everything lives under $SESSIONDB_CLUSTER_DIR (default /tmp/sessiondb-cluster); nothing outside
# it is written or signalled, and the servers on 5432/3306 are never touched. Ports (defaults):
#   SESSIONDB_CLUSTER_PG_PORT         5441  primary; the synchronous standby is +1, the async +2
#   SESSIONDB_CLUSTER_PGBOUNCER_PORT  6441
#   SESSIONDB_CLUSTER_GALERA_PORT     3341  first node; the others are +1, +2
#   SESSIONDB_CLUSTER_GCOMM_PORT      GALERA_PORT+1230 (4571): group communication, +0..+2
#   SESSIONDB_CLUSTER_IST_PORT        GALERA_PORT+1330 (4671): incremental state transfer
#   SESSIONDB_CLUSTER_SST_PORT        GALERA_PORT+1430 (4771): rsync state snapshot transfer
# `start` writes $SESSIONDB_CLUSTER_DIR/env: export lines for the parts that are up
# (SESSIONDB_CLUSTER_PG_PRIMARY_URL, SESSIONDB_CLUSTER_PG_STANDBY_URLS, synchronous first,
# SESSIONDB_CLUSTER_PGBOUNCER_URL, SESSIONDB_CLUSTER_GALERA_URLS). Every server trusts
# 127.0.0.1: PostgreSQL and PgBouncer user postgres, MariaDB root, no password. Each engine
# has a database named `test`.
set -euo pipefail

DIR=${SESSIONDB_CLUSTER_DIR:-/tmp/sessiondb-cluster}
PG_PORT=${SESSIONDB_CLUSTER_PG_PORT:-5441}
PGB_PORT=${SESSIONDB_CLUSTER_PGBOUNCER_PORT:-6441}
GALERA_PORT=${SESSIONDB_CLUSTER_GALERA_PORT:-3341}
GCOMM_PORT=${SESSIONDB_CLUSTER_GCOMM_PORT:-$((GALERA_PORT + 1230))}
IST_PORT=${SESSIONDB_CLUSTER_IST_PORT:-$((GALERA_PORT + 1330))}
SST_PORT=${SESSIONDB_CLUSTER_SST_PORT:-$((GALERA_PORT + 1430))}
PG_BIN=${SESSIONDB_PG_BIN:-/usr/lib/postgresql/15/bin}
GALERA_LIB=${SESSIONDB_GALERA_LIB:-/usr/lib/galera/libgalera_smm.so}
TIMEOUT=${SESSIONDB_CLUSTER_TIMEOUT:-90}   # seconds to wait for any one server

PG_NAMES=(pg0 pg1 pg2)        # primary, synchronous standby (application_name s1), async standby
GALERA_NAMES=(galera1 galera2 galera3)

say() { echo "cluster: $*" >&2; }
die() { say "$*"; exit 1; }

# PostgreSQL and PgBouncer refuse to run as root: then they run as the `postgres` OS user, and
# MariaDB as `mysql` (the rsync daemon a joining Galera node starts must own what it receives).
if [ "$(id -u)" = 0 ]; then
  id postgres >/dev/null 2>&1 || die "running as root and there is no 'postgres' OS user"
  id mysql >/dev/null 2>&1 || die "running as root and there is no 'mysql' OS user"
  AS_PG=(runuser -u postgres --)
  MARIADB_USER=(--user=mysql)
else
  AS_PG=()
  MARIADB_USER=()
fi

pg_port() { echo $((PG_PORT + $1)); }                    # node index -> port
galera_port() { echo $((GALERA_PORT + $1)); }
pg_url() { echo "postgresql://postgres@127.0.0.1:$1/test"; }
galera_url() { echo "mysql://root@127.0.0.1:$1/test"; }

alive() {  # pid -> is it running (and not a zombie)?
  local pid=$1 state
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 1
  state=$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null || true)
  [ "$state" != Z ]
}
pidfile_pid() { [ -f "$1" ] && head -n1 "$1" | tr -dc 0-9 || true; }
# A pid is ours only if its command line names our directory (a stale pidfile may name a
# recycled pid belonging to someone else).
ours() { alive "$1" && tr '\0' ' ' <"/proc/$1/cmdline" 2>/dev/null | grep -qF "$DIR/"; }

port_busy() { ss -Hltn "sport = :$1" 2>/dev/null | grep -q .; }
check_free() {  # port what
  if port_busy "$1"; then die "port $1 ($2) is taken by another process: choose other ports (see the header of $0)"; fi
}

reachable_by() {  # OS user: the servers run as it, so it must reach the cluster directory
  chmod go+rx "$DIR"
  runuser -u "$1" -- test -x "$DIR" \
    || die "the '$1' OS user cannot reach $DIR (a parent directory is private): choose a directory it can reach, e.g. under /tmp"
}

wait_until() {  # description, command... (retries every 0.1 s up to $TIMEOUT s)
  local what=$1 deadline=$((SECONDS + TIMEOUT)); shift
  until "$@" >/dev/null 2>&1; do
    [ "$SECONDS" -lt "$deadline" ] || { say "timed out waiting for $what"; return 1; }
    sleep 0.1
  done
}

stop_pid() {  # pid signal description: signal, wait until gone, then SIGKILL
  local pid=$1 sig=$2 what=$3 i
  ours "$pid" || return 0
  kill "-$sig" "$pid" 2>/dev/null || true
  for i in $(seq 1 300); do alive "$pid" || { say "stopped $what (pid $pid)"; return 0; }; sleep 0.1; done
  say "$what (pid $pid) did not stop in 30 s: SIGKILL"
  kill -KILL "$pid" 2>/dev/null || true
  for i in $(seq 1 50); do alive "$pid" || return 0; sleep 0.1; done
}

# -- PostgreSQL ------------------------------------------------------------------------------

pg_pid() { pidfile_pid "$DIR/${PG_NAMES[$1]}/postmaster.pid"; }
pg_up() { local pid; pid=$(pg_pid "$1"); ours "$pid" && "$PG_BIN/pg_isready" -q -h 127.0.0.1 -p "$(pg_port "$1")" -U postgres; }
psql_at() { "$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$1" -U postgres -d postgres -tAc "$2"; }

pg_mkdir() {  # an empty data directory the server's OS user owns
  rm -rf "$1" && mkdir -m 700 "$1"
  if [ "$(id -u)" = 0 ]; then chown postgres: "$1"; fi
}

pg_init_primary() {
  local data=$DIR/pg0
  pg_mkdir "$data"
  "${AS_PG[@]}" "$PG_BIN/initdb" -D "$data" -U postgres -A trust -E UTF8 --locale=C \
    --no-sync --no-instructions >"$DIR/log/pg0-initdb.log" 2>&1 \
    || { cat "$DIR/log/pg0-initdb.log" >&2; die "initdb failed"; }
  cat >>"$data/postgresql.conf" <<EOF

# -- tools/cluster.sh (inherited by the standbys through pg_basebackup) --
listen_addresses = '127.0.0.1'
unix_socket_directories = '$DIR/sock'
max_connections = 300
shared_buffers = 32MB
fsync = off                      # a crash of the OS is not what these servers are for
wal_level = replica
max_wal_senders = 10
max_replication_slots = 10
wal_keep_size = 256MB
hot_standby = on
hot_standby_feedback = ${SESSIONDB_CLUSTER_HOT_STANDBY_FEEDBACK:-on}
synchronous_standby_names = 's1'
synchronous_commit = on
wal_receiver_status_interval = 1s
logging_collector = off
log_line_prefix = '%m [%p] %q%a@%d '
EOF
  cat >"$data/pg_hba.conf" <<EOF
local all all trust
host all all 127.0.0.1/32 trust
local replication all trust
host replication all 127.0.0.1/32 trust
EOF
  echo "port = $(pg_port 0)" >>"$data/postgresql.auto.conf"
  touch "$data/.cluster-ready"
}

pg_init_standby() {  # index (1 = synchronous s1, 2 = asynchronous s2)
  local i=$1 name=${PG_NAMES[$1]} data=$DIR/${PG_NAMES[$1]}
  pg_mkdir "$data"
  psql_at "$(pg_port 0)" "SELECT pg_drop_replication_slot('$name') FROM pg_replication_slots WHERE slot_name = '$name'" >/dev/null
  "${AS_PG[@]}" "$PG_BIN/pg_basebackup" -h 127.0.0.1 -p "$(pg_port 0)" -U postgres -D "$data" \
    -X stream -c fast -C -S "$name" -R --no-sync >"$DIR/log/$name-basebackup.log" 2>&1 \
    || { cat "$DIR/log/$name-basebackup.log" >&2; die "pg_basebackup for $name failed"; }
  rm -f "$data/.cluster-ready"
  cat >>"$data/postgresql.auto.conf" <<EOF
port = $(pg_port "$i")
primary_conninfo = 'host=127.0.0.1 port=$(pg_port 0) user=postgres application_name=s$i'
primary_slot_name = '$name'
EOF
  touch "$data/.cluster-ready"
}

pg_launch() {  # index
  local i=$1 name=${PG_NAMES[$1]}
  check_free "$(pg_port "$i")" "PostgreSQL $name"
  "${AS_PG[@]}" "$PG_BIN/pg_ctl" -D "$DIR/$name" -l "$DIR/log/$name.log" -s start >/dev/null 9>&- \
    || { tail -n 20 "$DIR/log/$name.log" >&2; die "PostgreSQL $name did not start"; }
}

start_pg() {
  local i
  mkdir -p "$DIR/sock"
  if [ "$(id -u)" = 0 ]; then
    chown postgres: "$DIR/sock" "$DIR/log"
    reachable_by postgres
  fi
  if pg_up 0; then
    say "pg0 (primary) already up on $(pg_port 0)"
  else
    [ -f "$DIR/pg0/.cluster-ready" ] || pg_init_primary
    pg_launch 0
    wait_until "PostgreSQL primary" pg_up 0
    say "pg0 (primary) up on $(pg_port 0)"
  fi
  for i in 1 2; do
    if pg_up "$i"; then
      say "${PG_NAMES[$i]} (standby) already up on $(pg_port "$i")"
      continue
    fi
    [ -f "$DIR/${PG_NAMES[$i]}/.cluster-ready" ] || pg_init_standby "$i" &
  done
  wait
  for i in 1 2; do
    [ -f "$DIR/${PG_NAMES[$i]}/.cluster-ready" ] || die "standby ${PG_NAMES[$i]} was not made"
    pg_up "$i" || pg_launch "$i"
  done
  for i in 1 2; do wait_until "standby ${PG_NAMES[$i]}" pg_up "$i"; done
  # Both standbys stream (only when pg0 is still the primary: a test may have promoted one).
  if [ "$(psql_at "$(pg_port 0)" "SELECT pg_is_in_recovery()")" = f ]; then
    wait_until "the synchronous standby s1 to stream" bash -c \
      "[ \"\$(\"$PG_BIN/psql\" -X -h 127.0.0.1 -p $(pg_port 0) -U postgres -d postgres -tAc \"SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming' AND (application_name = 's2' OR sync_state = 'sync')\")\" = 2 ]"
    psql_at "$(pg_port 0)" "SELECT 1 FROM pg_database WHERE datname = 'test'" | grep -q 1 \
      || psql_at "$(pg_port 0)" "CREATE DATABASE test"
  fi
  say "pg1 (synchronous standby s1) up on $(pg_port 1), pg2 (async standby s2) up on $(pg_port 2)"
}

stop_pg() {
  local i
  for i in 0 1 2; do stop_pid "$(pg_pid "$i")" INT "PostgreSQL ${PG_NAMES[$i]}"; done
}

# -- PgBouncer -------------------------------------------------------------------------------

pgb_pid() { pidfile_pid "$DIR/pgbouncer/pgbouncer.pid"; }
pgb_up() { local pid; pid=$(pgb_pid); ours "$pid" && "$PG_BIN/pg_isready" -q -h 127.0.0.1 -p "$PGB_PORT" -U postgres -d test; }

start_pgbouncer() {
  local d=$DIR/pgbouncer
  if pgb_up; then say "pgbouncer already up on $PGB_PORT"; return 0; fi
  command -v pgbouncer >/dev/null || die "pgbouncer is not installed (apt-get install -y pgbouncer)"
  check_free "$PGB_PORT" PgBouncer
  mkdir -p "$d"
  cat >"$d/pgbouncer.ini" <<EOF
; written by tools/cluster.sh
[databases]
* = host=127.0.0.1 port=$(pg_port 0)

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $PGB_PORT
unix_socket_dir = $d
auth_type = trust
auth_file = $d/userlist.txt
admin_users = postgres
stats_users = postgres
pool_mode = transaction
max_client_conn = 500
default_pool_size = 20
max_db_connections = 0
ignore_startup_parameters = extra_float_digits,options
pidfile = $d/pgbouncer.pid
logfile = $DIR/log/pgbouncer.log
EOF
  echo '"postgres" ""' >"$d/userlist.txt"
  if [ "$(id -u)" = 0 ]; then chown -R postgres: "$d"; fi
  rm -f "$d/pgbouncer.pid"
  "${AS_PG[@]}" pgbouncer -d -q "$d/pgbouncer.ini" 9>&- \
    || { tail -n 20 "$DIR/log/pgbouncer.log" >&2; die "pgbouncer did not start"; }
  wait_until "pgbouncer" pgb_up
  say "pgbouncer up on $PGB_PORT (pool_mode=transaction, in front of $(pg_port 0))"
}

stop_pgbouncer() { stop_pid "$(pgb_pid)" INT pgbouncer; }

# -- MariaDB Galera --------------------------------------------------------------------------

galera_pid() { pidfile_pid "$DIR/${GALERA_NAMES[$1]}/mariadbd.pid"; }
galera_running() { ours "$(galera_pid "$1")"; }
mariadb_at() { mariadb --no-defaults -h 127.0.0.1 -P "$1" -uroot --connect-timeout=2 -NBe "$2"; }
galera_status() { mariadb_at "$(galera_port "$1")" "SHOW GLOBAL STATUS LIKE '$2'" 2>/dev/null | awk '{print $2}'; }
galera_synced() { galera_running "$1" && [ "$(galera_status "$1" wsrep_local_state_comment)" = Synced ]; }
galera_complete() {  # every node Synced in a cluster of 3
  local i
  for i in 0 1 2; do
    galera_synced "$i" && [ "$(galera_status "$i" wsrep_cluster_size)" = 3 ] || return 1
  done
}

galera_launch() {  # index, extra arguments...
  local i=$1 name=${GALERA_NAMES[$1]} d=$DIR/${GALERA_NAMES[$1]}; shift
  local members=127.0.0.1:$GCOMM_PORT,127.0.0.1:$((GCOMM_PORT + 1)),127.0.0.1:$((GCOMM_PORT + 2))
  check_free "$(galera_port "$i")" "Galera $name"
  check_free "$((GCOMM_PORT + i))" "Galera $name group communication"
  mkdir -p "$d/data"
  touch "$DIR/log/$name.err"
  if [ "$(id -u)" = 0 ]; then chown -R mysql: "$d" "$DIR/log/$name.err"; fi
  # mariadbd stays in the foreground; setsid detaches it from this shell and its terminal
  setsid mariadbd --no-defaults "${MARIADB_USER[@]}" \
    --datadir="$d/data" --port="$(galera_port "$i")" --bind-address=127.0.0.1 \
    --socket="$d/mysqld.sock" --pid-file="$d/mysqld.pid" --log-error="$DIR/log/$name.err" \
    --skip-name-resolve --max-connections=300 \
    --innodb-buffer-pool-size=64M --innodb-log-file-size=16M \
    --innodb-flush-log-at-trx-commit=2 --innodb-autoinc-lock-mode=2 \
    --default-storage-engine=InnoDB --binlog-format=ROW \
    --wsrep-on=ON --wsrep-provider="$GALERA_LIB" \
    --wsrep-cluster-name="sessiondb-$GALERA_PORT" --wsrep-node-name="$name" \
    --wsrep-cluster-address="gcomm://$members" \
    --wsrep-node-address="127.0.0.1:$((GCOMM_PORT + i))" \
    --wsrep-provider-options="gmcast.listen_addr=tcp://127.0.0.1:$((GCOMM_PORT + i));ist.recv_addr=127.0.0.1:$((IST_PORT + i));gcache.size=64M" \
    --wsrep-sst-method=rsync --wsrep-sst-receive-address="127.0.0.1:$((SST_PORT + i))" \
    --wsrep-slave-threads=2 \
    "$@" </dev/null >>"$DIR/log/$name.out" 2>&1 9>&- &
  echo $! >"$d/mariadbd.pid"
}

start_galera() {
  local i any=no
  command -v mariadbd >/dev/null || die "mariadbd is not installed"
  [ -e "$GALERA_LIB" ] || die "$GALERA_LIB is missing (apt-get install -y galera-4)"
  command -v rsync >/dev/null || die "rsync is missing (apt-get install -y rsync): the joiners need it"
  if galera_complete; then say "galera already up on $(galera_port 0)-$(galera_port 2)"; return 0; fi
  for i in 0 1 2; do galera_running "$i" && any=yes; done
  if [ "$(id -u)" = 0 ]; then reachable_by mysql; fi
  if [ "$any" = no ]; then
    # nobody to join: node 1 starts a new cluster (made once, here, with the system tables)
    local d=$DIR/${GALERA_NAMES[0]}
    if [ ! -f "$d/.cluster-ready" ]; then
      rm -rf "$d" && mkdir -p "$d"
      if [ "$(id -u)" = 0 ]; then chown mysql: "$d"; fi
      mariadb-install-db --no-defaults "${MARIADB_USER[@]}" --datadir="$d/data" \
        --auth-root-authentication-method=normal --skip-test-db \
        >"$DIR/log/galera1-install.log" 2>&1 \
        || { cat "$DIR/log/galera1-install.log" >&2; die "mariadb-install-db failed"; }
      touch "$d/.cluster-ready"
    fi
    # we stopped it last (or it crashed): it holds the latest state, so it may bootstrap
    [ -f "$d/data/grastate.dat" ] && sed -i 's/^safe_to_bootstrap: 0/safe_to_bootstrap: 1/' "$d/data/grastate.dat"
    galera_launch 0 --wsrep-new-cluster
    wait_until "Galera node 1 to bootstrap" galera_synced 0
    # root over TCP without a password, as on the shared server; then the `test` database
    mariadb_at "$(galera_port 0)" "CREATE USER IF NOT EXISTS 'root'@'127.0.0.1' IDENTIFIED BY '';
      GRANT ALL ON *.* TO 'root'@'127.0.0.1' WITH GRANT OPTION;
      CREATE DATABASE IF NOT EXISTS test;" 2>/dev/null \
      || mariadb --no-defaults -S "$d/mysqld.sock" -uroot -e "
      CREATE USER IF NOT EXISTS 'root'@'127.0.0.1' IDENTIFIED BY '';
      GRANT ALL ON *.* TO 'root'@'127.0.0.1' WITH GRANT OPTION;
      CREATE DATABASE IF NOT EXISTS test;"
    say "galera1 bootstrapped a new cluster on $(galera_port 0)"
  fi
  # the others join (an empty data directory: the state arrives by rsync SST)
  for i in 0 1 2; do
    galera_running "$i" && continue
    galera_launch "$i"
  done
  wait_until "a Galera cluster of 3 Synced nodes" galera_complete
  say "galera up on $(galera_port 0)-$(galera_port 2) (wsrep_cluster_size=3, all Synced)"
}

stop_galera() {
  local i
  for i in 2 1 0; do stop_pid "$(galera_pid "$i")" TERM "Galera ${GALERA_NAMES[$i]}"; done
}

# -- env file and status ---------------------------------------------------------------------

write_env() {
  local tmp=$DIR/env.tmp
  {
    echo "# written by tools/cluster.sh: the parts that were up at $(date -u +%FT%TZ)"
    printf 'export SESSIONDB_CLUSTER_DIR=%q\n' "$DIR"  # quoted: the shell and shlex read it
    if pg_up 0; then
      echo "export SESSIONDB_CLUSTER_PG_PRIMARY_URL=$(pg_url "$(pg_port 0)")"
      if pg_up 1 && pg_up 2; then
        echo "export SESSIONDB_CLUSTER_PG_STANDBY_URLS=$(pg_url "$(pg_port 1)"),$(pg_url "$(pg_port 2)")"
      fi
    fi
    if pgb_up; then echo "export SESSIONDB_CLUSTER_PGBOUNCER_URL=$(pg_url "$PGB_PORT")"; fi
    if galera_complete; then
      echo "export SESSIONDB_CLUSTER_GALERA_URLS=$(galera_url "$(galera_port 0)"),$(galera_url "$(galera_port 1)"),$(galera_url "$(galera_port 2)")"
    fi
  } >"$tmp"
  mv "$tmp" "$DIR/env"
}

status() {
  local i down=0 role
  for i in 0 1 2; do
    if pg_up "$i"; then
      role=$(psql_at "$(pg_port "$i")" "SELECT CASE WHEN pg_is_in_recovery() THEN 'standby' ELSE 'primary' END" 2>/dev/null || echo '?')
      echo "pg ${PG_NAMES[$i]} 127.0.0.1:$(pg_port "$i") up ($role, pid $(pg_pid "$i"))"
    else
      echo "pg ${PG_NAMES[$i]} 127.0.0.1:$(pg_port "$i") down"; down=1
    fi
  done
  if pgb_up; then echo "pgbouncer 127.0.0.1:$PGB_PORT up (pid $(pgb_pid))"
  else echo "pgbouncer 127.0.0.1:$PGB_PORT down"; down=1; fi
  for i in 0 1 2; do
    if galera_running "$i" && [ -n "$(galera_status "$i" wsrep_local_state_comment)" ]; then
      echo "galera ${GALERA_NAMES[$i]} 127.0.0.1:$(galera_port "$i") up ($(galera_status "$i" wsrep_local_state_comment), cluster size $(galera_status "$i" wsrep_cluster_size), pid $(galera_pid "$i"))"
    else
      echo "galera ${GALERA_NAMES[$i]} 127.0.0.1:$(galera_port "$i") down"; down=1
    fi
  done
  return "$down"
}

parts() {  # the argument (checked below) -> the parts, in start order
  if [ "${1:-all}" = all ]; then echo pg pgbouncer galera; else echo "$1"; fi
}

locked() {  # one cluster.sh at a time per directory (several helpers may start the same part);
  # the servers are started with fd 9 closed, so they do not hold the lock
  mkdir -p "$DIR/log"
  exec 9>"$DIR/.lock"
  flock -w 300 9 || die "another tools/cluster.sh holds $DIR/.lock"
}

cmd=${1:-status}
case "${2:-all}" in
  all|pg|pgbouncer|galera) ;;
  *) die "unknown part '$2' (pg, pgbouncer, galera or all)" ;;
esac
case "$cmd" in
  start)
    locked
    t0=${EPOCHREALTIME/[.,]/}
    for part in $(parts "${2:-all}"); do
      [ "$part" = pgbouncer ] && ! pg_up 0 && say "note: PgBouncer's primary ($(pg_port 0)) is not up"
      "start_$part"
    done
    write_env
    t=$(( ${EPOCHREALTIME/[.,]/} - t0 ))
    say "started ${2:-all} in $((t / 1000000)).$((t / 100000 % 10)) s; env: $DIR/env"
    ;;
  stop)
    [ -d "$DIR" ] || exit 0
    locked
    for part in $(parts "${2:-all}" | tr ' ' '\n' | tac); do "stop_$part"; done
    write_env
    ;;
  destroy)
    [ -d "$DIR" ] || exit 0
    locked
    stop_pgbouncer; stop_pg; stop_galera
    rm -rf "$DIR"
    say "removed $DIR"
    ;;
  status)
    [ -d "$DIR" ] || { echo "no cluster in $DIR (tools/cluster.sh start)"; exit 1; }
    status
    ;;
  *)
    echo "usage: $0 start|stop [pg|pgbouncer|galera|all] | status | destroy" >&2
    exit 2
    ;;
esac
