//! account-usage: the batch ETL job and report engine behind the Account usage
//! report (see `DESIGN.md` in the shared docs for the contract).
//!
//! Data flows one way: source → (extract → aggregate → write → publish →
//! rollup) → report. [`job`] runs the first part ([`extract`], [`aggregate`],
//! [`warehouse`], [`rollup`]); [`report`] reads only the warehouse. [`seed`]
//! makes synthetic operational data, [`demo`] ties it all together, and the
//! binary's argument handling lives in [`cli`].

pub mod aggregate;
pub mod cli;
pub mod demo;
pub mod extract;
pub mod job;
pub mod model;
pub mod report;
pub mod rollup;
pub mod seed;
pub mod source;
pub mod warehouse;
