-- Failed logins per client address, so that one address guessing across many accounts (each
-- below its own lockout) is slowed too. A fixed window per address: failures count from
-- window_start; the max-th within the window blocks the address until blocked_until. Kept in
-- PostgreSQL like the account lockout, so it holds across restarts and every API process.
CREATE TABLE login_ip_failures (
    client_ip      text PRIMARY KEY,
    window_start   timestamptz NOT NULL,
    failures       integer NOT NULL CHECK (failures >= 0),
    blocked_until  timestamptz
);

CREATE INDEX login_ip_failures_window_start ON login_ip_failures (window_start);
