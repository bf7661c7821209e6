//! Printing to standard output that ends quietly when the reader has gone
//! (`entraguard-notify dlq list | head -1`): Rust ignores SIGPIPE, so a write to a closed pipe
//! fails with `BrokenPipe`, and `println!` turns that into a panic (exit 101, "failed printing
//! to stdout"). [`outln!`](crate::outln) and [`out!`](crate::out) exit with 0 instead, as a
//! command whose reader took what it wanted has nothing left to do; any other write error is
//! reported on stderr with exit code 1.

use std::io::Write;

/// Writes `args` (and a newline with `newline`) to stdout; see the module docs.
pub fn write(args: std::fmt::Arguments<'_>, newline: bool) {
    let mut out = std::io::stdout().lock();
    let done = if newline { writeln!(out, "{args}") } else { write!(out, "{args}") };
    if let Err(e) = done {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        // Stderr may be gone too; nothing more to say then.
        let _ = writeln!(std::io::stderr(), "error: cannot write to stdout: {e}");
        std::process::exit(1);
    }
}

/// `println!` that ends the process quietly on a closed pipe ([`crate::stdout`]).
#[macro_export]
macro_rules! outln {
    () => { $crate::stdout::write(format_args!(""), true) };
    ($($arg:tt)*) => { $crate::stdout::write(format_args!($($arg)*), true) };
}

/// `print!` that ends the process quietly on a closed pipe ([`crate::stdout`]).
#[macro_export]
macro_rules! out {
    ($($arg:tt)*) => { $crate::stdout::write(format_args!($($arg)*), false) };
}
