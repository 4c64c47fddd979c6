//! Helpers shared by the integration tests in tests/tests/: `support` (where the built binaries
//! are, and a sandbox per test that runs `genv` as a subprocess; other users), `shim` (C
//! programs built on demand, commands under the shim). Each test crate uses
//! `use genv_tests::{shim::*, support::*};`.

pub mod shim;
pub mod support;
