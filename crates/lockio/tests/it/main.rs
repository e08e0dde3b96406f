//! Integration tests: real `lockio serve` processes on 127.0.0.1, driven over HTTP.

mod support;

mod client;
mod cluster;
mod contract;
mod ctl;
mod dashboard;
mod durability;
mod expiry;
mod failover;
mod hardening;
mod observability;
mod readme;
mod serve;
mod shared;
mod validation;
mod waiting;
mod watch;
