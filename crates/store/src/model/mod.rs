//! Records as stored. Plain data; the engine and server turn them into their own views.
//!
//! Every closed set of values a record holds is one of core's enums (statuses, kinds,
//! sources…), read and bound as TEXT through their `sqlx` impls: a row is decoded once, here
//! at the database edge, and a row holding an unknown text is an error naming it.

mod alerts;
mod checks;
mod costs;
mod projects;
mod resources;
mod runs;
mod schedules;
mod tokens;
mod workers;
mod workflows;

pub use alerts::*;
pub use checks::*;
pub use costs::*;
pub use projects::*;
pub use resources::*;
pub use runs::*;
pub use schedules::*;
pub use tokens::*;
pub use workers::*;
pub use workflows::*;
