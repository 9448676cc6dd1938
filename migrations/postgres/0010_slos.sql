-- Service level objectives per project, judged by GET /api/slos/status over a trailing window:
--   success_rate  target = the lowest acceptable share of settled sessions that succeeded, in percent;
--   p99_latency   target = the highest acceptable p99 of MCP tool-call latency, in milliseconds;
--   cost_budget   target = the most the window may cost, in USD.
-- agent_name NULL means the whole project. docs/analytics.md defines each value precisely.
CREATE TABLE slos (
    id            uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    project_id    uuid NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    name          text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    kind          text NOT NULL CHECK (kind IN ('success_rate', 'p99_latency', 'cost_budget')),
    agent_name    text CHECK (agent_name IS NULL OR length(agent_name) BETWEEN 1 AND 256),
    target        double precision NOT NULL CHECK (target > 0),
    window_hours  double precision NOT NULL CHECK (window_hours > 0 AND window_hours <= 2160),
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT slos_success_rate_percent CHECK (kind <> 'success_rate' OR target <= 100),
    -- Lets alert rules reference an SLO of their own project only (0011).
    CONSTRAINT slos_project_id_id UNIQUE (project_id, id)
);

CREATE INDEX slos_project_created ON slos (project_id, created_at, id);
