//! `cpkeep cluster defrag`: rolling defragmentation, followers first and the leader last.

use std::time::Duration;

use clap::Args;

use super::connection::ConnectionArgs;
use super::exit::classified;
use super::output::{Render, Renderer};
use super::table::Table;
use super::Exit;
use crate::etcd::{rolling_defrag, DefragOptions, DefragReport};

#[derive(Debug, Args)]
pub struct DefragArgs {
    /// Bound on one member's defragmentation (it rewrites the whole database).
    #[arg(long, default_value = "2m", value_parser = super::duration::positive)]
    pub member_timeout: Duration,

    /// How long a defragmented member may take to be healthy again before cpkeep stops.
    #[arg(long, default_value = "30s", value_parser = super::duration::positive)]
    pub settle_timeout: Duration,

    /// Connection flags, as `cluster health`: the section below.
    #[command(flatten)]
    pub conn: ConnectionArgs,
}

pub async fn run(args: DefragArgs, out: &Renderer) -> anyhow::Result<Exit> {
    let conn = args.conn.resolve()?;
    let opts = DefragOptions {
        member_timeout: args.member_timeout,
        settle: args.settle_timeout,
        ..DefragOptions::default()
    };
    let report = rolling_defrag(&conn, &opts)
        .await
        .map_err(|e| classified(e.class(), &e))?;
    out.print(&report)?;
    Ok(Exit::Ok)
}

fn size(v: Option<i64>) -> String {
    v.map(|b| crate::units::human_bytes(b.max(0) as u64))
        .unwrap_or_else(|| "-".to_string())
}

impl Render for DefragReport {
    fn table(&self) -> String {
        let mut t = Table::new([
            "NAME",
            "ID",
            "ROLE",
            "DB SIZE BEFORE",
            "IN USE BEFORE",
            "DB SIZE AFTER",
            "IN USE AFTER",
            "SECONDS",
        ]);
        for m in &self.members {
            t.row([
                m.name.clone(),
                m.id.clone(),
                if m.was_leader { "leader" } else { "follower" }.to_string(),
                size(m.db_size_before),
                size(m.db_size_in_use_before),
                size(m.db_size_after),
                size(m.db_size_in_use_after),
                format!("{:.1}", m.seconds),
            ]);
        }
        format!(
            "defragmented {} member(s), one at a time, followers first and the leader last\n{}",
            self.members.len(),
            t.render()
        )
    }
}
