//! `just compare`: the incident, replayed. The same burst of buyers, from the
//! same load generator ([`loadtest::burst::fire`]), against the three reference
//! designs ([`reference`]) and against dropline itself (a gateway and
//! two processors), in four workloads (the last spreads its buyers over 20
//! SKUs released together); one row per (workload, strategy).
//!
//! The slow-database day injects its delay one way for every design: each
//! row gets a fresh [`DelayProxy`] in [`Delay::EveryTransaction`] mode, and
//! the design's Postgres connections go through it (a reference design's
//! pool; dropline's gateway and processors, `dropline migrate` included).
//! Every transaction takes `--db-delay-ms` longer inside the database: the
//! proxy holds the client's message that ends it for that long before
//! Postgres receives it (a `COMMIT` or `ROLLBACK`; for a statement run
//! outside `BEGIN`, its own transaction, the statement itself in the simple
//! protocol or the `Sync` that commits it in the extended one). So the
//! transaction keeps its row locks through the delay, as the seed's slow
//! database did, and a design that queues on a lock (row-lock) pays for it
//! the way it would; every transaction pays once, however many statements
//! it has. Connecting, a pool's ping, a statement's prepare, `BEGIN` and
//! statements inside a transaction block are not delayed; see
//! [`dropline_testkit::proxy`] for the exact rules. No design's code knows
//! about the delay. Creating and filling a reference design's database, and
//! the tally's reads, go to Postgres directly.
//!
//! Every database a row creates (`reference_<design>_<id>`,
//! `dropline_load_<id>`) is dropped once the row is measured, unless
//! `--keep-databases`.

pub mod cli;
pub mod reference;
mod rows;
pub mod tally;

use anyhow::Context as _;

use crate::cli::{Args, Strategy};
use crate::reference::Design;
use crate::tally::Row;

pub async fn run(args: Args) -> anyhow::Result<Vec<Row>> {
    let mut rows = Vec::new();
    for &workload in &args.workloads {
        let sizes = args.sizes(workload);
        eprintln!(
            "== {}: {} buyers, {}, db delay {} ms",
            workload.name(),
            sizes.buyers,
            sizes.units(),
            sizes.db_delay_ms
        );
        let mut table_rows = Vec::new();
        for &strategy in &args.strategies {
            eprintln!("-- {} / {}", workload.name(), strategy.name());
            let row = match strategy {
                Strategy::SeedLock => {
                    rows::reference_run(&args, workload, &sizes, Design::SeedLock).await
                }
                Strategy::RowLock => {
                    rows::reference_run(&args, workload, &sizes, Design::RowLock).await
                }
                Strategy::RedisLua => {
                    rows::reference_run(&args, workload, &sizes, Design::RedisLua).await
                }
                Strategy::Dropline => rows::dropline_run(&args, workload, &sizes).await,
            }
            .with_context(|| format!("{} / {}", workload.name(), strategy.name()))?;
            eprintln!(
                "   sold {} (oversold {}), duplicates {}, lost {}, errors {}, {:.2} s",
                row.sold, row.oversold, row.duplicates, row.lost, row.errors, row.wall_s
            );
            table_rows.push(row);
        }
        let title = format!(
            "{}: {} buyers, {}{}",
            workload.name(),
            sizes.buyers,
            sizes.units(),
            if sizes.db_delay_ms > 0 {
                format!(", every database transaction +{} ms", sizes.db_delay_ms)
            } else {
                String::new()
            }
        );
        let table_refs: Vec<&Row> = table_rows.iter().collect();
        println!("{}", tally::table(&title, &table_refs));
        if let Some(ratios) = tally::against_dropline(&table_refs) {
            println!("{ratios}");
        }
        println!();
        rows.extend(table_rows);
    }
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_vec_pretty(&rows)?)
            .with_context(|| format!("write {}", path.display()))?;
        eprintln!("wrote {}", path.display());
    }
    Ok(rows)
}
