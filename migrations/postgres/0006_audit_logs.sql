-- Every metadata write and every authentication event. Rows are never updated, and they outlive
-- what they describe: no foreign keys, so deleting a project or user keeps its history.
-- project_id is NULL for events outside a project (logins); user_id names the person the event
-- is about, so that a project's admins can see the logins of their members.
CREATE TABLE audit_logs (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at          timestamptz NOT NULL DEFAULT now(),
    actor       text NOT NULL,
    action      text NOT NULL,
    target      text,
    project_id  uuid,
    user_id     uuid,
    client_ip   text,
    details     jsonb NOT NULL DEFAULT '{}'::jsonb
);

CREATE INDEX audit_logs_project ON audit_logs (project_id, id DESC);
CREATE INDEX audit_logs_project_action ON audit_logs (project_id, action, id DESC);
CREATE INDEX audit_logs_user ON audit_logs (user_id, id DESC) WHERE project_id IS NULL;
