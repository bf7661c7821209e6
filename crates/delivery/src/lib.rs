//! One delivery attempt, below the queue: render the channel's message ([`channel`]), sign it
//! ([`signature`]), send it ([`transport`]) and read the answer into an [`outcome::Outcome`]
//! ([`delivery`]). No Redis: the worker decides retries and dead letters; the admin server's
//! Send test takes the same path.

pub mod channel;
pub mod delivery;
pub mod outcome;
pub mod settings;
pub mod signature;
pub mod transport;
