//! End-to-end tests: the real `soc-collector`, `soc-agent` and `socctl`
//! binaries, on loopback, with temporary folders. One test binary, a module
//! per capability.

mod agent_crash;
mod backup;
mod crash;
mod packaging;
mod prometheus;
mod reload;
mod responders;
mod rotation;
mod skeleton;
mod syslog;
mod upgrade;
