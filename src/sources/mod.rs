//! Listers of the stores a migration moves between. Each writes a chunk set that `keyrecon-diff` reads.
pub mod s3;
