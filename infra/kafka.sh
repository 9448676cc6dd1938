#!/usr/bin/env bash
# One Apache Kafka broker in KRaft mode (broker and controller in one node) on 127.0.0.1:9092.
# Its jars come from Maven Central through mvn; its data lives in .data/kafka.
# Usage: infra/kafka.sh up|down|status
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

PORT=${SPANSTREAM_KAFKA_PORT:-9092}
CONTROLLER_PORT=${SPANSTREAM_KAFKA_CONTROLLER_PORT:-9093}
HOME_DIR=$DATA_DIR/kafka
PIDFILE=$HOME_DIR/kafka.pid
CLASSPATH_FILE=$HOME_DIR/classpath
POM=$ROOT/infra/kafka/pom.xml

running_pid() {
  [ -f "$PIDFILE" ] || return 1
  local pid; pid=$(cat "$PIDFILE")
  kill -0 "$pid" 2>/dev/null && echo "$pid"
}

resolve_jars() {
  command -v java >/dev/null && command -v mvn >/dev/null || ensure_packages default-jre-headless maven
  if [ ! -s "$CLASSPATH_FILE" ] || [ "$POM" -nt "$CLASSPATH_FILE" ]; then
    say "resolving the Kafka broker's jars from Maven Central (first run takes a minute)"
    mvn -q -B -f "$POM" dependency:build-classpath -Dmdep.includeScope=runtime \
      -Dmdep.outputFile="$CLASSPATH_FILE" >"$HOME_DIR/mvn.log" 2>&1 \
      || die "mvn could not resolve the Kafka jars; see $HOME_DIR/mvn.log"
  fi
}

write_config() {
  cat >"$HOME_DIR/server.properties" <<PROPS
process.roles=broker,controller
node.id=1
controller.quorum.bootstrap.servers=127.0.0.1:$CONTROLLER_PORT
listeners=PLAINTEXT://127.0.0.1:$PORT,CONTROLLER://127.0.0.1:$CONTROLLER_PORT
advertised.listeners=PLAINTEXT://127.0.0.1:$PORT
controller.listener.names=CONTROLLER
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
inter.broker.listener.name=PLAINTEXT
log.dirs=$HOME_DIR/logs
num.partitions=1
# Topics are created explicitly with their partition counts; a typo must not invent one.
auto.create.topics.enable=false
offsets.topic.replication.factor=1
offsets.topic.num.partitions=10
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
# One node: no reason to wait for more members before the first rebalance.
group.initial.rebalance.delay.ms=0
PROPS
}

# Runs in a subshell or background job so that `exec` leaves java with the job's pid.
java_run() {
  exec ${JAVA:-java} -Xms256m -Xmx1g -XX:+UseG1GC -Dkafka.logs.dir="$HOME_DIR" \
    -Dlog4j2.configurationFile="$ROOT/infra/kafka/log4j2.properties" \
    -cp "$(cat "$CLASSPATH_FILE")" "$@"
}

up() {
  mkdir -p "$HOME_DIR"
  if pid=$(running_pid); then say "kafka already running (pid $pid) on 127.0.0.1:$PORT"; return 0; fi
  port_open "$PORT" && die "port $PORT is taken by another program; stop it or set SPANSTREAM_KAFKA_PORT"
  resolve_jars
  write_config
  if [ ! -f "$HOME_DIR/logs/meta.properties" ]; then
    local cluster_id; cluster_id=$(java_run kafka.tools.StorageTool random-uuid 2>/dev/null | tail -n1)
    (java_run kafka.tools.StorageTool format -t "$cluster_id" -c "$HOME_DIR/server.properties" \
      --standalone) >"$HOME_DIR/format.log" 2>&1 || die "formatting Kafka storage failed; see $HOME_DIR/format.log"
  fi
  say "starting kafka on 127.0.0.1:$PORT"
  # Its own session: a Ctrl-C meant for `spanstream dev` must not stop the broker under it.
  JAVA="setsid java" java_run kafka.Kafka "$HOME_DIR/server.properties" </dev/null >"$HOME_DIR/stdout.log" 2>&1 &
  echo $! >"$PIDFILE"
  # A cold JVM on two cores needs 5-15 s; the broker is ready when it logs that it started.
  for _ in $(seq 1 120); do
    if ! running_pid >/dev/null; then
      tail -n 20 "$HOME_DIR/server.log" "$HOME_DIR/stdout.log" 2>/dev/null >&2 || true
      die "kafka exited while starting; its log is $HOME_DIR/server.log"
    fi
    if port_open "$PORT" && grep -q "Kafka Server started" "$HOME_DIR/server.log" 2>/dev/null; then
      say "kafka ready (pid $(cat "$PIDFILE"))"; return 0
    fi
    sleep 0.5
  done
  die "kafka did not answer on 127.0.0.1:$PORT within 60 s; its log is $HOME_DIR/server.log"
}

down() {
  local pid
  if ! pid=$(running_pid); then say "kafka not running"; rm -f "$PIDFILE"; return 0; fi
  say "stopping kafka (pid $pid)"
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 1 60); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
  kill -KILL "$pid" 2>/dev/null || true
  rm -f "$PIDFILE"
}

status() {
  if pid=$(running_pid) && port_open "$PORT"; then echo "kafka: running (pid $pid) on 127.0.0.1:$PORT"
  else echo "kafka: stopped"; return 3; fi
}

case "${1:-}" in
  up) up ;; down) down ;; status) status ;;
  *) echo "usage: $0 up|down|status" >&2; exit 2 ;;
esac
