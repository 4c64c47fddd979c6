//! System mode's service (`genv daemon`, run by root): the only writer of the tables, which the
//! CLI and the SDK ask over a Unix socket (see ARCHITECTURE.md, "System mode").
//!
//! - `wire`: the request/answer format; `server`: the socket, callers as the kernel names them,
//!   per-user connection limits; `client`: the other end; `locks`: device locks kept by the
//!   service.

pub mod client;
pub mod locks;
pub mod proto;
pub mod server;
pub mod service;
pub mod wire;
