//! Integration tests: real `lockio serve` processes on 127.0.0.1, driven over HTTP.

mod support;

mod client;
mod contract;
mod dashboard;
mod cluster;
mod ctl;
mod durability;
mod expiry;
mod failover;
mod observability;
mod readme;
mod serve;
mod validation;
mod waiting;
