-- Video categories; the name is unique (the book seeds them by name).
CREATE TABLE IF NOT EXISTS categories (
    id          bigserial PRIMARY KEY,
    name        varchar(255) NOT NULL,
    inserted_at timestamp(0) without time zone NOT NULL,
    updated_at  timestamp(0) without time zone NOT NULL
);

CREATE UNIQUE INDEX IF NOT EXISTS categories_name_index ON categories (name);
