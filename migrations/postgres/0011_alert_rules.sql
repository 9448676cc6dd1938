-- Alert rules per project: what should fire a webhook (issue 6 fires them; this is the config).
--   session_tagged        a session got one of `tags`;
--   slo_breached          SLO `slo_id` (of the same project) is breached;
--   mcp_server_down       MCP server `server_name` (NULL: any) went down;
--   mcp_server_recovered  ... came back;
--   cost_budget_crossed   the project spent more than `budget_usd` over the last `window_hours`.
-- `secret` signs the webhook body, so it is kept as given (a hash could not sign); the API never
-- returns it after creation. Deleting an SLO deletes the rules that watch it.
CREATE TABLE alert_rules (
    id                uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    project_id        uuid NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    name              text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    kind              text NOT NULL CHECK (kind IN ('session_tagged', 'slo_breached', 'mcp_server_down',
                                                    'mcp_server_recovered', 'cost_budget_crossed')),
    tags              text[],
    slo_id            uuid,
    server_name       text CHECK (server_name IS NULL OR length(server_name) BETWEEN 1 AND 256),
    budget_usd        numeric(14, 6) CHECK (budget_usd IS NULL OR budget_usd > 0),
    window_hours      double precision CHECK (window_hours IS NULL OR (window_hours > 0 AND window_hours <= 2160)),
    webhook_url       text NOT NULL CHECK (webhook_url ~ '^https?://' AND length(webhook_url) <= 2048),
    secret            text,
    enabled           boolean NOT NULL DEFAULT true,
    cooldown_seconds  integer NOT NULL DEFAULT 300 CHECK (cooldown_seconds BETWEEN 0 AND 604800),
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now(),
    FOREIGN KEY (project_id, slo_id) REFERENCES slos (project_id, id) ON DELETE CASCADE,
    CONSTRAINT alert_rules_session_tagged CHECK (kind <> 'session_tagged' OR cardinality(tags) > 0),
    CONSTRAINT alert_rules_slo_breached CHECK (kind <> 'slo_breached' OR slo_id IS NOT NULL),
    CONSTRAINT alert_rules_cost_budget CHECK (kind <> 'cost_budget_crossed'
                                              OR (budget_usd IS NOT NULL AND window_hours IS NOT NULL))
);

CREATE INDEX alert_rules_project_created ON alert_rules (project_id, created_at, id);
