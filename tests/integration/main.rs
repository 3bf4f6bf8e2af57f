//! Integration tests of the `meshrig` binary and the load engine, one test binary with
//! a module per concern.

mod ca;
mod conformance;
mod control;
mod echo;
mod engine;
mod golden;
mod load;
mod mtls;
mod proxy;
mod route;
mod run;
mod run_real;
mod support;
mod validate;
