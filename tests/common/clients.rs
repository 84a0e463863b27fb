//! Running a real client's test suite against a gateway: its command gets the gateway's base
//! URL and an access key in `DGIDGI_BASE_URL` and `DGIDGI_KEY`, and its report is printed and
//! must say it passed.

use std::process::Command;

/// Runs `suite` against the gateway at `base_url`; panics with its report unless it exits 0 and
/// its report holds `passed` (a suite that ran nothing is no pass).
pub fn run_suite(mut suite: Command, base_url: &str, key: &str, passed: &str) {
    let output = suite
        .env("DGIDGI_BASE_URL", base_url)
        .env("DGIDGI_KEY", key)
        .output()
        .unwrap();
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    println!("{report}");
    assert!(output.status.success(), "{suite:?} failed:\n{report}");
    assert!(report.contains(passed), "{report}");
}
