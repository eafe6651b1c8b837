-- Videos in their final book shape (create + category_id + slug). `slug`
-- stores the slugified title only; the URL parameter is "<id>-<slug>".
CREATE TABLE IF NOT EXISTS "videos" (
    "id"          INTEGER PRIMARY KEY AUTOINCREMENT,
    "url"         TEXT,
    "title"       TEXT,
    "description" TEXT,
    "user_id"     INTEGER CONSTRAINT "videos_user_id_fkey" REFERENCES "users" ("id"),
    "category_id" INTEGER CONSTRAINT "videos_category_id_fkey" REFERENCES "categories" ("id"),
    "slug"        TEXT,
    "inserted_at" TEXT NOT NULL,
    "updated_at"  TEXT NOT NULL
);

CREATE INDEX IF NOT EXISTS "videos_user_id_index" ON "videos" ("user_id");
