//! The one integration-test binary: every test runs the real `account-usage`
//! binary against a real PostgreSQL (started by [`common`]) or SQLite file.

mod broken;
#[allow(dead_code)]
mod common;
mod faults;
mod hostile;
mod named;
mod ops;
mod overlap;
mod reference;
mod report;
mod rollups;
mod run;
mod schema;
mod secrets;
mod seed;
mod serve;
mod wh;
