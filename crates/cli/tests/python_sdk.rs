//! The Python package (`sdk/python`) against this build's binary: runs its pytest suite, which
//! starts `agent-os serve` itself, registers plugins over both transports and drives every
//! function of the package end to end. Without python3 and pytest it says what to install and
//! passes, unless CI=true, where it fails. (`mypy --strict` and the wheel build run in `.ci/run`.)

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests: a failed assumption is the test failing

mod common;

#[test]
fn the_python_package_works_against_the_real_server() {
    let sdk = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../sdk/python");
    common::pytest(&sdk, "tests", "pytest", "install pytest: python3 -m pip install pytest");
}
