//! Tests of the pure lock state machine: scripted scenarios (`scenarios/*.script`) and
//! property tests over random command sequences.

mod properties;
mod scenarios;
