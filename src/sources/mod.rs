//! Listers of the stores a migration moves between. Each writes a chunk set that `keyrecon-diff` reads.
pub mod cassandra;
pub mod s3;
