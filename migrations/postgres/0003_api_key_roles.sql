-- A key acts with one of the project roles: viewers read, members also write (spans, SLOs,
-- alert rules), admins also manage the project (members, keys, invites). Keys made before roles
-- existed were the project owner's only keys, so they keep full rights.
ALTER TABLE api_keys ADD COLUMN role text NOT NULL DEFAULT 'member'
    CHECK (role IN ('admin', 'member', 'viewer'));
UPDATE api_keys SET role = 'admin';
