//! Compile tests of the macros: `pass` cases must build (and run), `fail` cases must be
//! rejected with exactly the checked-in `.stderr`. Regenerate those with
//! `TRYBUILD=overwrite cargo test -p cluster2-ui-tests` and read every diff.
//!
//! trybuild runs each pass case's binary, and a `#[cluster2::main]` entry point serves until it
//! is stopped. So pass cases put the macro's `main` in a module and the binary's own `main` only
//! checks that the expansion is an entry point; the expansion is type-checked all the same.

#[test]
fn main_attr() {
    let t = trybuild::TestCases::new();
    t.pass("tests/main/pass/*.rs");
    t.compile_fail("tests/main/fail/*.rs");
}

#[test]
fn configure_app() {
    let t = trybuild::TestCases::new();
    t.pass("tests/configure_app/pass/*.rs");
    t.compile_fail("tests/configure_app/fail/*.rs");
}

#[test]
fn warm_up() {
    let t = trybuild::TestCases::new();
    t.pass("tests/warm_up/pass/*.rs");
    t.compile_fail("tests/warm_up/fail/*.rs");
}

#[test]
fn status() {
    let t = trybuild::TestCases::new();
    t.pass("tests/status/pass/*.rs");
    t.compile_fail("tests/status/fail/*.rs");
}

#[test]
fn configure_monitor() {
    let t = trybuild::TestCases::new();
    t.pass("tests/configure_monitor/pass/*.rs");
    t.compile_fail("tests/configure_monitor/fail/*.rs");
}

#[test]
fn ecv_validator() {
    let t = trybuild::TestCases::new();
    t.pass("tests/ecv_validator/pass/*.rs");
    t.compile_fail("tests/ecv_validator/fail/*.rs");
}

#[test]
fn should_kill() {
    let t = trybuild::TestCases::new();
    t.pass("tests/should_kill/pass/*.rs");
    t.compile_fail("tests/should_kill/fail/*.rs");
}
