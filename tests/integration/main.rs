//! Integration tests: real Delta tables (the bundled sample, tables written here with
//! delta-rs, and the shared corpus written by Spark, Databricks and delta-rs), attested and
//! checked against digests recomputed independently from the raw bytes.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod ai_logs;
mod cli;
mod cloud;
mod concurrency;
mod copies;
mod corpus;
mod crash;
mod errors;
mod hsm;
mod kafka;
mod operations;
mod proofs;
mod python;
mod reader_view;
mod s3;
mod sample;
mod serve;
mod sql;
mod support;
mod timestamps;
mod verify;
mod windows;
