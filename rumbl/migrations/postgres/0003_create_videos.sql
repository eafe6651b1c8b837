-- Videos in their final book shape: create_video + add_category_id_to_video
-- + add_slug_to_video folded into one table definition. `slug` stores the
-- slugified title only ("elixir"); the URL parameter "2-elixir" is built
-- from id and slug. Older tables without slug/category_id get those
-- columns added by the migration runner (additive, nullable).
CREATE TABLE IF NOT EXISTS videos (
    id          bigserial PRIMARY KEY,
    url         varchar(255),
    title       varchar(255),
    description text,
    user_id     bigint CONSTRAINT videos_user_id_fkey REFERENCES users (id),
    category_id bigint CONSTRAINT videos_category_id_fkey REFERENCES categories (id),
    slug        varchar(255),
    inserted_at timestamp(0) without time zone NOT NULL,
    updated_at  timestamp(0) without time zone NOT NULL
);

CREATE INDEX IF NOT EXISTS videos_user_id_index ON videos (user_id);
