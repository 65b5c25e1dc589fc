# Replica mode of scripts/blackbox (BLACKBOX_REPLICAS=N, N >= 2), sourced by it:
# a fresh PostgreSQL database, N `patchbay serve` replicas on it sharing the
# master keys, admin token, session signing key and a Redis prefix of this run
# (the invalidation bus and the Stripe rate limiter), and nginx round-robin
# over them without upstream keep-alive, so consecutive requests of one client
# land on different replicas. Uses scripts/blackbox's variables and helpers
# (WORK, VPY, BIN, log, die, free_port, wait_http, start_patchbay, stop_patchbay,
# PG_URL, REDIS_URL, PG_DB, PB_PIDS, NGINX_PID, SUMMARY, failures).

# Installs a Debian package when this runs as root with apt-get, else fails
# with what to install.
need_command() {
  local cmd=$1 pkg=$2
  command -v "$cmd" >/dev/null && return 0
  if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
    log "installing $pkg with apt-get"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$pkg" >/dev/null
  fi
  command -v "$cmd" >/dev/null || die "replica mode needs $cmd: install the Debian package $pkg"
}

redis_ping() {
  local hostport=${REDIS_URL#redis://}
  hostport=${hostport%%/*}
  hostport=${hostport##*@}
  (exec 5<>"/dev/tcp/${hostport%:*}/${hostport##*:}" && printf 'PING\r\n' >&5 && timeout 2 head -c 5 <&5 | grep -q PONG) 2>/dev/null
}

# Waits until a replica hears the others (patchbay_invalidation_listening 1).
wait_listening() {
  local url=$1 pid=$2
  "$VPY" - "$url" "$pid" <<'PY'
import os, sys, time, urllib.request
url, pid = sys.argv[1], int(sys.argv[2])
deadline = time.monotonic() + 20
while time.monotonic() < deadline:
    os.kill(pid, 0)
    text = urllib.request.urlopen(url + "/metrics", timeout=2).read().decode()
    if any(l.strip() == "patchbay_invalidation_listening 1" for l in text.splitlines()):
        sys.exit(0)
    time.sleep(0.1)
sys.exit(f"{url} never started listening for invalidations")
PY
}

start_replicas() {
  need_command psql postgresql-client
  need_command nginx nginx
  psql "$PG_URL/postgres" -Atqc 'SELECT 1' >/dev/null || die "no PostgreSQL at $PG_URL (user postgres, trust auth)"
  redis_ping || die "no Redis at $REDIS_URL"

  local run
  run=$("$VPY" -c 'import secrets; print(secrets.token_hex(6))')
  PG_DB=patchbay_blackbox_$run
  psql "$PG_URL/postgres" -qc "CREATE DATABASE \"$PG_DB\"" >/dev/null
  local master_keys session_key
  master_keys=$("$BIN" keys generate --id k1)
  session_key=$("$VPY" -c 'import secrets; print(secrets.token_urlsafe(36))')

  local i port upstreams=""
  REPLICA_URLS=()
  for ((i = 1; i <= REPLICAS; i++)); do
    port=$(free_port)
    mkdir -p "$WORK/data-$i"
    # PATCHBAY_WEBHOOK_ALLOW_INSECURE_LOOPBACK: what `auto` gives the single
    # SQLite server, so the suite's loopback subscribers are allowed here too.
    start_patchbay "$WORK/patchbay-$i.log" \
      PATCHBAY_LISTEN="127.0.0.1:$port" \
      PATCHBAY_DATA_DIR="$WORK/data-$i" \
      PATCHBAY_DATABASE_URL="$PG_URL/$PG_DB" \
      PATCHBAY_MASTER_KEYS="$master_keys" \
      PATCHBAY_SESSION_SIGNING_KEY="$session_key" \
      PATCHBAY_REDIS_URL="$REDIS_URL" \
      PATCHBAY_REDIS_PREFIX="pbbb_$run" \
      PATCHBAY_WEBHOOK_ALLOW_INSECURE_LOOPBACK=true
    PB_PIDS+=("$STARTED_PID")
    REPLICA_URLS+=("http://127.0.0.1:$port")
    # One after the other: the first applies the migrations.
    wait_http "http://127.0.0.1:$port/readyz" "$STARTED_PID" 60 200 || die "replica $i did not become ready"
    upstreams+="    server 127.0.0.1:$port max_fails=0;"$'\n'
  done
  for ((i = 0; i < REPLICAS; i++)); do
    wait_listening "${REPLICA_URLS[$i]}" "${PB_PIDS[$i]}" || die "replica $((i + 1)) is not on the invalidation bus"
  done

  # nginx: round-robin, a new upstream connection per request (no `keepalive`
  # in the upstream), no body size limit or buffering of its own, so Patchbay
  # answers every request itself.
  local nport
  nport=$(free_port)
  mkdir -p "$WORK/nginx"
  local user_line=""
  [[ $(id -u) -eq 0 ]] && user_line="user root;"
  cat >"$WORK/nginx/nginx.conf" <<CONF
$user_line
worker_processes 1;
daemon off;
pid $WORK/nginx/nginx.pid;
error_log $WORK/nginx-error.log warn;
events { worker_connections 512; }
http {
  log_format upstream '\$request_method \$uri \$status upstream=\$upstream_addr';
  access_log $WORK/nginx-access.log upstream;
  client_body_temp_path $WORK/nginx/body;
  proxy_temp_path $WORK/nginx/proxy;
  fastcgi_temp_path $WORK/nginx/fastcgi;
  uwsgi_temp_path $WORK/nginx/uwsgi;
  scgi_temp_path $WORK/nginx/scgi;
  client_max_body_size 0;
  underscores_in_headers on;
  ignore_invalid_headers off;
  upstream patchbay {
$upstreams  }
  server {
    listen 127.0.0.1:$nport;
    location / {
      proxy_pass http://patchbay;
      proxy_http_version 1.1;
      proxy_set_header Host \$http_host;
      proxy_set_header Connection "";
      proxy_buffering off;
      proxy_request_buffering off;
      proxy_read_timeout 120s;
      proxy_next_upstream off;
    }
  }
}
CONF
  nginx -e "$WORK/nginx-error.log" -p "$WORK/nginx" -c "$WORK/nginx/nginx.conf" >"$WORK/nginx.out" 2>&1 &
  NGINX_PID=$!
  PATCHBAY_URL=http://127.0.0.1:$nport
  wait_http "$PATCHBAY_URL/readyz" "$NGINX_PID" 20 200 || die "nginx did not start"
  log "nginx $PATCHBAY_URL over ${REPLICA_URLS[*]} (PostgreSQL $PG_DB, Redis prefix pbbb_$run), localstripe $LOCALSTRIPE_URL, fake_connect $FAKE_CONNECT_URL"
}

stop_replicas() {
  stop_pid "$NGINX_PID" 5
  NGINX_PID=""
  # Each replica served requests: nginx logged which upstream answered.
  local i served counts=()
  pb_logs=()
  for ((i = 0; i < REPLICAS; i++)); do
    served=$(grep -c "upstream=${REPLICA_URLS[$i]#http://}\$" "$WORK/nginx-access.log" 2>/dev/null || true)
    counts+=("${served:-0}")
    ((${served:-0} > 0)) || failures+=("replica $((i + 1)) served no request through nginx")
    stop_patchbay "${PB_PIDS[$i]}" "replica-$((i + 1))"
    pb_logs+=("$WORK/patchbay-$((i + 1)).log")
  done
  local alive=()
  for i in "${PB_PIDS[@]}"; do kill -0 "$i" 2>/dev/null && alive+=("$i"); done
  PB_PIDS=(${alive[@]+"${alive[@]}"}) # the cleanup kills what did not stop
  SUMMARY="$SUMMARY; requests per replica: ${counts[*]}"
  psql "$PG_URL/postgres" -qc "DROP DATABASE IF EXISTS \"$PG_DB\" WITH (FORCE)" >/dev/null \
    || failures+=("could not drop database $PG_DB")
  PG_DB=""
}
