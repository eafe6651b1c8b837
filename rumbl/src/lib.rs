//! The Rumbl application from *Programming Phoenix*'s channels chapter, built on the
//! phx-channels framework's public API only (Endpoint, SocketHandler, Channel, Router, `http::router`), as an Elixir
//! team would write it in `lib/rumbl_web/`:
//!
//! - [`user_socket`]: `Rumbl.UserSocket` — Phoenix.Token authentication, `users_socket:<id>`.
//! - [`video_channel`]: `Rumbl.VideoChannel` — `videos:<id>`: annotations on join (with
//!   `last_seen_id`), `new_annotation` persisted then broadcast.
//! - [`annotation`]: the Annotation changeset (casting and validation of client params) and
//!   the `annotation.json` / `user.json` views.
//! - [`pages`]: the HTML side — `/`, `/login`, `/watch/:id` (mints `window.userToken`);
//!   [`assets`]: `/assets/*`, the built JS/CSS bundle.
//! - [`app`]: wiring for `phx-server serve`: the endpoint, socket and routes over a store;
//!   [`config`]: `DATABASE_URL`, `POOL_SIZE`, `ASSETS_DIR`.
//! - [`store`]: the `AnnotationStore` (Postgres or SQLite), migrations and demo seed.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod annotation;
pub mod app;
pub mod assets;
pub mod config;
pub mod join_boundary;
pub mod pages;
pub mod password;
pub mod store;
pub mod user_socket;
pub mod video_channel;

pub use user_socket::UserSocket;
pub use video_channel::VideoChannel;

pub use config::{RumblConfig, RumblSettings};
