//! `account-usage serve`: the HTTP API and the embedded report page.
