//! Upgrades that lose nothing (issue 27): the layout version a worker checks at start-up.

/// The layout version: recorded by the first worker, a layout a worker cannot read refused.
mod version;
