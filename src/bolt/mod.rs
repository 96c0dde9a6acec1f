//! etcd's backend file format (bbolt): page layout, a streaming scanner that learns a snapshot's
//! revision while it passes by, and (later) a random-access reader, a fresh-file writer and a check.
//! Read-only on its input; corruption is an error naming the page, never a panic.
