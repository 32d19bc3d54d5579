#!/usr/bin/env bash
# Starts and stops a single-node Garage for benchmarks and manual use (tests start their own).
#   scripts/garage.sh start DIR [PORT]   # data, config, pid, log and an env file in DIR; ready-waits
#   scripts/garage.sh stop DIR           # stops it by PID
#   . DIR/env                            # AWS_* variables, S3_ENDPOINT and BUCKET for clients
# DIR is reused: the same access key and bucket survive restarts (the bench keeps its 1M objects).
# Every port is bound to 127.0.0.1.
set -euo pipefail
export PATH="$HOME/.cargo/bin:$PATH"
cmd=${1:?usage: garage.sh start|stop DIR [PORT]}
dir=${2:?usage: garage.sh start|stop DIR [PORT]}
port=${3:-3900}
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)
case "$cmd" in
start)
  if [ -f "$dir/garage.pid" ] && kill -0 "$(cat "$dir/garage.pid")" 2>/dev/null; then
    echo "garage already running (pid $(cat "$dir/garage.pid"))"; exit 0
  fi
  command -v garage >/dev/null || { echo "garage not installed: run scripts/install-garage.sh" >&2; exit 2; }
  if [ ! -f "$dir/env" ]; then
    key="GK$(openssl rand -hex 12)"; secret=$(openssl rand -hex 32); rpc=$(openssl rand -hex 32)
    cat > "$dir/env" <<ENV
export AWS_ACCESS_KEY_ID=$key
export AWS_SECRET_ACCESS_KEY=$secret
export AWS_REGION=garage
export AWS_DEFAULT_REGION=garage
export AWS_EC2_METADATA_DISABLED=true
export S3_ENDPOINT=http://127.0.0.1:$port
export BUCKET=bench
export GARAGE_RPC_SECRET=$rpc
ENV
  fi
  . "$dir/env"
  cat > "$dir/garage.toml" <<CONF
metadata_dir = "$dir/meta"
data_dir = "$dir/data"
db_engine = "sqlite"
replication_factor = 1
rpc_bind_addr = "127.0.0.1:$((port + 1))"
rpc_public_addr = "127.0.0.1:$((port + 1))"
rpc_secret = "$GARAGE_RPC_SECRET"

[s3_api]
s3_region = "garage"
api_bind_addr = "127.0.0.1:$port"
root_domain = ".s3.garage.localhost"
CONF
  GARAGE_DEFAULT_ACCESS_KEY=$AWS_ACCESS_KEY_ID GARAGE_DEFAULT_SECRET_KEY=$AWS_SECRET_ACCESS_KEY GARAGE_DEFAULT_BUCKET=$BUCKET \
    RUST_LOG=warn nohup garage -c "$dir/garage.toml" server --single-node --default-bucket >"$dir/garage.log" 2>&1 &
  echo $! > "$dir/garage.pid"
  for _ in $(seq 1 300); do
    # Any HTTP answer (403 without credentials) means the S3 API is up; then wait for the bucket.
    if curl -s -o /dev/null "http://127.0.0.1:$port/" && curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/$BUCKET" | grep -qv '^000$'; then
      sleep 0.5; echo "garage up: $S3_ENDPOINT bucket $BUCKET (pid $(cat "$dir/garage.pid")); . $dir/env"; exit 0
    fi
    kill -0 "$(cat "$dir/garage.pid")" 2>/dev/null || { echo "garage exited:" >&2; tail -20 "$dir/garage.log" >&2; exit 2; }
    sleep 0.1
  done
  echo "garage did not answer on $S3_ENDPOINT within 30 s" >&2; exit 2
  ;;
stop)
  if [ -f "$dir/garage.pid" ]; then
    pid=$(cat "$dir/garage.pid")
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    rm -f "$dir/garage.pid"
  fi
  ;;
*) echo "usage: garage.sh start|stop DIR [PORT]" >&2; exit 2 ;;
esac
