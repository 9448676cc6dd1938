-- Alert incidents and their webhook deliveries (docs/alerts.md). Every API process may run the
-- alert engine; these tables are what makes each alert fire once.

-- One row per incident: a rule's condition that became true. States: firing, acknowledged,
-- snoozed (until snoozed_until), resolved. At most one open (not resolved) incident per rule and
-- dedup_key: claiming one is an INSERT ... ON CONFLICT DO NOTHING, so two engines seeing the same
-- condition open it once.
CREATE TABLE alerts (
    id               uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    project_id       uuid NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    rule_id          uuid NOT NULL REFERENCES alert_rules (id) ON DELETE CASCADE,
    kind             text NOT NULL,
    dedup_key        text NOT NULL,
    -- The event that opened it when that event is one-off (a session's tag change, a recovery):
    -- a redelivered record then finds its incident even after it was resolved.
    source_event     text,
    state            text NOT NULL CHECK (state IN ('firing', 'acknowledged', 'snoozed', 'resolved')),
    summary          text NOT NULL,
    details          jsonb NOT NULL DEFAULT '{}',
    fired_at         timestamptz NOT NULL DEFAULT now(),
    -- false: opened within the rule's cooldown of its previous notified incident, so not sent.
    notified         boolean NOT NULL,
    notifications    integer NOT NULL DEFAULT 0,
    -- When the engine next sends a repeat (firing) or wakes it (snoozed); NULL: never.
    next_notify_at   timestamptz,
    acknowledged_at  timestamptz,
    acknowledged_by  text,
    snoozed_until    timestamptz,
    snoozed_by       text,
    resolved_at      timestamptz,
    resolved_by      text,
    updated_at       timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT alerts_snoozed_until CHECK (state <> 'snoozed' OR snoozed_until IS NOT NULL)
);

CREATE UNIQUE INDEX alerts_open_per_rule ON alerts (rule_id, dedup_key) WHERE state <> 'resolved';
CREATE UNIQUE INDEX alerts_source_event ON alerts (rule_id, source_event);
CREATE INDEX alerts_project_fired ON alerts (project_id, fired_at DESC, id DESC);
CREATE INDEX alerts_rule_fired ON alerts (rule_id, fired_at DESC) WHERE notified;
CREATE INDEX alerts_due ON alerts (next_notify_at) WHERE next_notify_at IS NOT NULL;

-- One row per webhook call to make: the exact body (signed as is on every attempt), its attempts
-- and outcome. A pending row whose next_attempt_at has passed is due; an engine claims it by
-- moving next_attempt_at past its own timeout (a lease), so a crash mid-send is retried by any
-- engine once the lease runs out.
CREATE TABLE alert_deliveries (
    id               uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    alert_id         uuid NOT NULL REFERENCES alerts (id) ON DELETE CASCADE,
    rule_id          uuid NOT NULL REFERENCES alert_rules (id) ON DELETE CASCADE,
    project_id       uuid NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    event            text NOT NULL CHECK (event IN ('fired', 'repeated', 'resolved')),
    body             text NOT NULL,
    state            text NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'delivered', 'failed')),
    attempts         integer NOT NULL DEFAULT 0,
    next_attempt_at  timestamptz NOT NULL DEFAULT now(),
    last_status      integer,
    last_error       text,
    created_at       timestamptz NOT NULL DEFAULT now(),
    delivered_at     timestamptz
);

CREATE INDEX alert_deliveries_due ON alert_deliveries (next_attempt_at) WHERE state = 'pending';
CREATE INDEX alert_deliveries_alert ON alert_deliveries (alert_id, created_at);

-- The last MCP server status the engine saw, so that `recovered` means "was down, now answers"
-- and a redelivered or out-of-order check changes nothing.
CREATE TABLE alert_server_states (
    project_id  uuid NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    server_name text NOT NULL,
    status      text NOT NULL,
    checked_at  timestamptz NOT NULL,
    PRIMARY KEY (project_id, server_name)
);

-- A snoozed rule opens incidents (they are listed) but sends no fired or repeated webhook until
-- `until`; a resolved one is still sent, so a receiver's open incident is closed.
CREATE TABLE alert_rule_snoozes (
    rule_id     uuid PRIMARY KEY REFERENCES alert_rules (id) ON DELETE CASCADE,
    project_id  uuid NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    until       timestamptz NOT NULL,
    snoozed_by  text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);
