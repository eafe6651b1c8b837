-- Annotations: `at` is the player position in milliseconds.
CREATE TABLE IF NOT EXISTS "annotations" (
    "id"          INTEGER PRIMARY KEY AUTOINCREMENT,
    "body"        TEXT,
    "at"          INTEGER,
    "user_id"     INTEGER CONSTRAINT "annotations_user_id_fkey" REFERENCES "users" ("id"),
    "video_id"    INTEGER CONSTRAINT "annotations_video_id_fkey" REFERENCES "videos" ("id"),
    "inserted_at" TEXT NOT NULL,
    "updated_at"  TEXT NOT NULL
);

CREATE INDEX IF NOT EXISTS "annotations_user_id_index" ON "annotations" ("user_id");
CREATE INDEX IF NOT EXISTS "annotations_video_id_index" ON "annotations" ("video_id");
