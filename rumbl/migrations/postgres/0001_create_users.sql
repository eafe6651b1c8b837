-- Users, shaped like the Rumbl book's create_user migration (Ecto defaults:
-- bigserial id, varchar(255) strings, timestamp(0) timestamps, no DB
-- defaults for the timestamps). IF NOT EXISTS: an existing Rumbl/Ecto
-- table is adopted as is, never rewritten.
CREATE TABLE IF NOT EXISTS users (
    id            bigserial PRIMARY KEY,
    name          varchar(255),
    username      varchar(255) NOT NULL,
    password_hash varchar(255),
    inserted_at   timestamp(0) without time zone NOT NULL,
    updated_at    timestamp(0) without time zone NOT NULL
);

CREATE UNIQUE INDEX IF NOT EXISTS users_username_index ON users (username);
