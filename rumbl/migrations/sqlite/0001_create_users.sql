-- Users, in the shape ecto_sqlite3 gives the book's create_user migration:
-- INTEGER autoincrement ids, TEXT strings, ISO-8601 TEXT timestamps.
CREATE TABLE IF NOT EXISTS "users" (
    "id"            INTEGER PRIMARY KEY AUTOINCREMENT,
    "name"          TEXT,
    "username"      TEXT NOT NULL,
    "password_hash" TEXT,
    "inserted_at"   TEXT NOT NULL,
    "updated_at"    TEXT NOT NULL
);

CREATE UNIQUE INDEX IF NOT EXISTS "users_username_index" ON "users" ("username");
