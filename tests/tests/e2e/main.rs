//! End-to-end tests: the real `soc-collector`, `soc-agent` and `socctl`
//! binaries, on loopback, with temporary folders. One test binary, a module
//! per capability.

mod crash;
mod responders;
mod skeleton;
