-- MCP servers a project registered for health checks (docs/health-checks.md). The prober reads
-- the enabled ones and probes each on its own interval; the results go to `health.checks`.
-- stdio servers carry command, args and env; sse and streamable_http servers a URL and headers.
CREATE TABLE mcp_servers (
    id                 uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    project_id         uuid NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    name               text NOT NULL CHECK (name ~ '^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$'),
    transport          text NOT NULL CHECK (transport IN ('stdio', 'sse', 'streamable_http')),
    command            text,
    args               jsonb NOT NULL DEFAULT '[]',
    env                jsonb NOT NULL DEFAULT '{}',
    url                text,
    headers            jsonb NOT NULL DEFAULT '{}',
    interval_seconds   double precision NOT NULL DEFAULT 60 CHECK (interval_seconds >= 1),
    timeout_seconds    double precision NOT NULL DEFAULT 10 CHECK (timeout_seconds > 0),
    degraded_after_ms  double precision NOT NULL DEFAULT 2000 CHECK (degraded_after_ms > 0),
    enabled            boolean NOT NULL DEFAULT true,
    created_at         timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now(),
    UNIQUE (project_id, name),
    CONSTRAINT mcp_servers_transport_fields CHECK (
        (transport = 'stdio' AND command IS NOT NULL AND url IS NULL)
        OR (transport <> 'stdio' AND url IS NOT NULL AND command IS NULL)
    )
);

CREATE INDEX mcp_servers_enabled ON mcp_servers (enabled) WHERE enabled;
