-- Video categories; the name is unique.
CREATE TABLE IF NOT EXISTS "categories" (
    "id"          INTEGER PRIMARY KEY AUTOINCREMENT,
    "name"        TEXT NOT NULL,
    "inserted_at" TEXT NOT NULL,
    "updated_at"  TEXT NOT NULL
);

CREATE UNIQUE INDEX IF NOT EXISTS "categories_name_index" ON "categories" ("name");
