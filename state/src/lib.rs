//! genv shared state
