//! Compile-time validation of the DSL: every rule's error message and span, kept by trybuild snapshots
//! (`tests/ui/*.stderr`; regenerate with `TRYBUILD=overwrite cargo test --test ui` after a deliberate change).

#[test]
fn dsl_errors_point_at_the_user_code_and_say_how_to_fix_it() {
    let cases = trybuild::TestCases::new();
    cases.compile_fail("tests/ui/*.rs");
}
