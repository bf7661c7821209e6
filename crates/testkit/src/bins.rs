//! The workspace's binaries for tests that spawn them: the first `bin_path` call in a process
//! runs `cargo build --workspace --bins` into the running test's own target directory and
//! profile, so a test never spawns a stale binary.
//!
//! For a test (and any debug build) it adds `--examples`, which builds nothing here (the
//! workspace has no examples) but makes cargo resolve features as `cargo test --workspace` does,
//! dev-dependencies included (tokio's `test-util`, `syn`'s `visit`, …). Without it the binaries
//! were built with another feature set than the tests, so tokio, every proc macro and everything
//! above them were compiled a second time in the middle of the first test run (issue 23: most
//! of a fresh clone's `./dev test`'s second build). With it, the binaries reuse the tests'
//! artifacts and only the two binaries no test target links (`entraguard-worker`,
//! `entraguard-bench`) are linked. A release build (the benchmark's measured runs) keeps the
//! production feature set.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// The path of workspace binary `name` (e.g. `"entraguard-worker"`), freshly built.
///
/// Panics with cargo's output when the build fails, or when the build did not produce `name`.
pub fn bin_path(name: &str) -> PathBuf {
    static BUILT: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    // The outcome is kept, not only success: after a failed build every later test reports the
    // same error instead of running cargo again.
    let profile_dir = match BUILT.get_or_init(build_workspace_bins) {
        Ok(dir) => dir,
        Err(report) => panic!("{report}"),
    };
    let path = profile_dir.join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    assert!(
        path.is_file(),
        "binary {name} not found at {} after `cargo build --workspace --bins`; is it a [[bin]] \
         of a workspace member?",
        path.display()
    );
    path
}

/// Where the running executable's binaries live, and how to build more of them there.
#[derive(Debug, Clone, PartialEq, Eq)]
struct BuildPlan {
    /// `target/<profile>`: where cargo puts the binaries.
    profile_dir: PathBuf,
    /// `target`, passed as `--target-dir`.
    target_dir: PathBuf,
    /// The cargo flags selecting the same profile as the running executable.
    profile_args: Vec<OsString>,
    /// `--examples` (features resolved with dev-dependencies, as for the tests) or nothing.
    feature_args: Vec<OsString>,
}

impl BuildPlan {
    /// Test executables live in `target/<profile>/deps/`, programs (`cargo run`, a bench
    /// driver) in `target/<profile>/`.
    fn for_exe(exe: &Path) -> Option<BuildPlan> {
        let mut profile_dir = exe.parent()?;
        let is_test = profile_dir.file_name().is_some_and(|n| n == "deps");
        if is_test {
            profile_dir = profile_dir.parent()?;
        }
        let target_dir = profile_dir.parent()?;
        let profile = profile_dir.file_name()?;
        let profile_args = if profile == "debug" {
            Vec::new()
        } else if profile == "release" {
            vec!["--release".into()]
        } else {
            // A custom profile builds into a directory of its own name.
            vec!["--profile".into(), profile.to_owned()]
        };
        let feature_args = if is_test || profile == "debug" { vec!["--examples".into()] } else { Vec::new() };
        Some(BuildPlan {
            profile_dir: profile_dir.to_path_buf(),
            target_dir: target_dir.to_path_buf(),
            profile_args,
            feature_args,
        })
    }
}

fn build_workspace_bins() -> Result<PathBuf, String> {
    let exe = std::env::current_exe().map_err(|e| format!("cannot find the running test: {e}"))?;
    let plan = BuildPlan::for_exe(&exe)
        .ok_or_else(|| format!("{} is not inside a cargo target directory", exe.display()))?;
    // `CARGO` is set by cargo for the tests and programs it runs: the same toolchain.
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(&cargo);
    cmd.args(["build", "--workspace", "--bins", "--quiet"])
        .args(&plan.profile_args)
        .args(&plan.feature_args)
        .arg("--target-dir")
        .arg(&plan.target_dir);
    // The build must see the environment `cargo test` was started in, not what cargo set for
    // this test process: build scripts rerun when a variable they watch changes (ring's watches
    // CARGO_PKG_NAME, CARGO_MANIFEST_DIR, OUT_DIR, …; proc-macro2's and anyhow's watch
    // RUSTC_BOOTSTRAP, which `./dev stress` sets for libtest's per-test times), and each rerun
    // recompiled ring and everything above it (rustls, reqwest, redis, lettre, …): about a
    // minute in each test binary that spawns binaries, and again in the next `cargo test`.
    for (name, _) in std::env::vars_os() {
        if name.to_str().is_some_and(set_by_cargo_for_tests) {
            cmd.env_remove(&name);
        }
    }
    // The testkit sits at <workspace>/crates/testkit; naming the manifest makes the build
    // independent of the directory the test runs in.
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../Cargo.toml");
    if manifest.is_file() {
        cmd.arg("--manifest-path").arg(manifest);
    }
    let out = cmd.output().map_err(|e| format!("cannot run {}: {e}", cargo.to_string_lossy()))?;
    if !out.status.success() {
        return Err(format!(
            "building the workspace binaries failed ({:?} exited with {}):\n{}{}",
            cmd,
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(plan.profile_dir)
}

/// Whether cargo sets `name` for the test (or program) it runs, rather than the developer for
/// cargo: <https://doc.rust-lang.org/cargo/reference/environment-variables.html>.
pub(crate) fn set_by_cargo_for_tests(name: &str) -> bool {
    name.starts_with("CARGO_PKG_")
        || matches!(
            name,
            "CARGO_MANIFEST_DIR"
                | "CARGO_MANIFEST_PATH"
                | "CARGO_MANIFEST_LINKS"
                | "CARGO_CRATE_NAME"
                | "CARGO_BIN_NAME"
                | "CARGO_PRIMARY_PACKAGE"
                | "CARGO_TARGET_TMPDIR"
                | "CARGO_RUSTC_CURRENT_DIR"
                | "OUT_DIR"
                | "RUSTC_BOOTSTRAP"
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_test_executable_in_deps_builds_into_its_profile() {
        let plan = BuildPlan::for_exe(Path::new("/w/target/debug/deps/e2e-0123abcd")).expect("plan");
        assert_eq!(plan.profile_dir, Path::new("/w/target/debug"));
        assert_eq!(plan.target_dir, Path::new("/w/target"));
        assert!(plan.profile_args.is_empty());
        assert_eq!(plan.feature_args, vec![OsString::from("--examples")], "the tests' feature set");
    }

    #[test]
    fn a_debug_program_builds_with_the_tests_features() {
        let plan = BuildPlan::for_exe(Path::new("/w/target/debug/entraguard-bench")).expect("plan");
        assert_eq!(plan.feature_args, vec![OsString::from("--examples")]);
    }

    #[test]
    fn a_release_program_builds_release() {
        let plan = BuildPlan::for_exe(Path::new("/w/target/release/entraguard-bench")).expect("plan");
        assert_eq!(plan.profile_dir, Path::new("/w/target/release"));
        assert_eq!(plan.profile_args, vec![OsString::from("--release")]);
        assert!(plan.feature_args.is_empty(), "a measured build keeps the production features");
    }

    #[test]
    fn a_custom_profile_is_named() {
        let plan = BuildPlan::for_exe(Path::new("/t/ci/deps/x")).expect("plan");
        assert_eq!(plan.target_dir, Path::new("/t"));
        assert_eq!(plan.profile_args, vec![OsString::from("--profile"), OsString::from("ci")]);
    }

    #[test]
    #[ignore = "builds every binary of the workspace; run with --ignored"]
    fn builds_and_finds_a_workspace_binary() {
        let worker = bin_path("entraguard-worker");
        assert!(worker.is_file());
        let out = Command::new(&worker).arg("--help").output().expect("run the worker");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }

    #[test]
    fn what_cargo_set_for_the_test_is_not_passed_to_the_build() {
        for name in
            ["CARGO_PKG_NAME", "CARGO_PKG_VERSION_PATCH", "CARGO_MANIFEST_DIR", "OUT_DIR", "RUSTC_BOOTSTRAP"]
        {
            assert!(set_by_cargo_for_tests(name), "{name}");
        }
        for name in ["CARGO_HOME", "CARGO_TARGET_DIR", "CARGO_PROFILE_DEV_DEBUG", "RUSTFLAGS", "PATH"] {
            assert!(!set_by_cargo_for_tests(name), "{name} is the developer's");
        }
    }

    #[test]
    fn the_running_test_has_a_plan() {
        let exe = std::env::current_exe().expect("current exe");
        let plan = BuildPlan::for_exe(&exe).expect("plan");
        assert!(exe.starts_with(&plan.profile_dir));
    }
}
