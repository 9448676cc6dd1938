-- People who sign in with an email and a password. The password is stored as an scrypt hash
-- with its own salt and cost parameters (api/passwords.py), so the cost can be raised later
-- without invalidating existing hashes. Failed logins and the lockout live on the row, so a
-- lockout survives a restart and holds across every API process.
CREATE TABLE users (
    id               uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    -- Stored lowercased (api/repositories/users.py), so the unique index is case-insensitive.
    email            text NOT NULL UNIQUE CHECK (email = lower(email) AND email LIKE '%_@_%'),
    password_hash    text NOT NULL,
    created_at       timestamptz NOT NULL DEFAULT now(),
    -- Consecutive failures since the last successful login or the end of the last lockout.
    failed_logins    integer NOT NULL DEFAULT 0 CHECK (failed_logins >= 0),
    locked_until     timestamptz,
    last_login_at    timestamptz
);

-- A login session: an opaque bearer token kept only as its SHA-256 (tokens are 256-bit random,
-- so a slow hash buys nothing), valid until expires_at or until logout deletes the row.
CREATE TABLE login_sessions (
    id            uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id       uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    token_hash    bytea NOT NULL UNIQUE,
    created_at    timestamptz NOT NULL DEFAULT now(),
    expires_at    timestamptz NOT NULL,
    client_ip     text
);

CREATE INDEX login_sessions_user_id ON login_sessions (user_id);
CREATE INDEX login_sessions_expires_at ON login_sessions (expires_at);
