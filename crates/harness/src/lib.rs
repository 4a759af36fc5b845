//! mesh-harness as a library: topology files and the network-namespace
//! machinery that brings them up with real meshd agents. The binary
//! (`mesh-harness`) and the end-to-end tests use it.
#![warn(missing_docs)]

pub mod churn;
pub mod join;
pub mod netns;
pub mod quorum;
pub mod scale;
pub mod sim;
pub mod svg;
pub mod targets;
pub mod topology;
