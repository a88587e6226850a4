//! Integration tests against the real Docker engine (started by `./scripts/setup --no-build`, and
//! by CI). They fail, never skip, when the engine is missing.
//!
//! The first run builds Debian rootfs tarballs with mmdebstrap (minutes); later runs reuse the
//! cache under `~/.cache/bot-bottle/rootfs` and the tagged images, so they take seconds.

mod images;
mod launch;
mod selftest;
