//! One module per subcommand, each the same shape: `Args` or `Command`, and `run`.

pub mod dlq;
pub mod endpoint;
pub mod layout;
pub mod publish;
pub mod rules;
pub mod shards;
pub mod silence;
pub mod stats;
