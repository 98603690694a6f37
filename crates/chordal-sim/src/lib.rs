//! # chordal-sim: the real Chord core under virtual time
//!
//! [`Sim`] runs many [`chordal_core::Node`]s over an in-memory network with a
//! virtual clock: messages take a configurable latency, may be lost, and dead
//! nodes swallow them (or refuse them, like a closed TCP port). Nothing here
//! sleeps, so thousands of nodes and minutes of protocol time run in seconds,
//! and every run is decided by its seed.
//!
//! [`Oracle`] knows the true ring (sorted live ids) and answers what every
//! successor, predecessor, finger and lookup *should* be.

#![warn(missing_docs)]

pub mod churn;
mod clock;
pub mod experiments;
mod latency;
pub mod plot;
mod sim;
pub mod traffic;

pub use chordal_core::Oracle;
pub use churn::{Churn, ChurnEvent, ChurnModel};
pub use clock::Clock;
pub use latency::Latency;
pub use sim::{Sim, SimConfig};
pub use traffic::{Counter, Traffic};
