//! The `loadtest` command line. Only [`crate::run`] reads it: it turns the
//! flags into the option structs each part of the library takes.

use clap::Parser;

use crate::burst::Crowd;
use crate::chaos::Chaos;

/// Where a tool-made stack finds the local services (shared by the load
/// test and the comparisons).
#[derive(Debug, Clone, clap::Args)]
pub struct Services {
    /// Postgres base URL (no database part): stacks create fresh databases on it.
    #[arg(
        long,
        env = "DROPLINE_POSTGRES",
        default_value = "postgres://postgres@127.0.0.1:5432"
    )]
    pub postgres: String,
    /// NATS for dropline.
    #[arg(long, env = "NATS_URL", default_value = "nats://127.0.0.1:4222")]
    pub nats_url: String,
}

/// Who in the crowd does what beyond buying once.
#[derive(Debug, Clone, clap::Args)]
pub struct CrowdArgs {
    /// Share of buyers (0–1) who double-click: the same purchase, same key,
    /// twice at once. Both answers must be the same.
    #[arg(long, default_value_t = 0.02, value_parser = share)]
    pub retry_share: f64,
    /// Share of buyers (0–1) who buy in two tabs: two keys at once. They may
    /// win at most the per-user limit; the other attempt is `limit_reached`.
    #[arg(long, default_value_t = 0.02, value_parser = share)]
    pub twice_share: f64,
    /// Seed choosing who double-clicks and who uses two tabs (printed, so a
    /// crowd can be run again); random without it.
    #[arg(long)]
    pub seed: Option<u64>,
}

impl From<&CrowdArgs> for Crowd {
    fn from(args: &CrowdArgs) -> Self {
        Crowd {
            retry_share: args.retry_share,
            twice_share: args.twice_share,
            seed: args.seed,
        }
    }
}

fn share(text: &str) -> Result<f64, String> {
    let value: f64 = text.parse().map_err(|e| format!("{e}"))?;
    if (0.0..=1.0).contains(&value) {
        Ok(value)
    } else {
        Err(format!("{value} is not a share between 0 and 1"))
    }
}

#[derive(Debug, Parser)]
#[command(version, about)]
pub struct Args {
    /// The gateway to load. Without it, the tool brings up its own stack
    /// (fresh database, a gateway and two processors) on the local services.
    #[arg(long, env = "DROPLINE_URL")]
    pub url: Option<String>,
    #[command(flatten)]
    pub services: Services,
    /// With --url: the gateway's HS256 secret (its DROPLINE_JWT_SECRET),
    /// to mint each buyer's token. The tool's own stack has its own.
    #[arg(long, env = "DROPLINE_JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<String>,
    /// With --url: buyers' tokens, one `user_id token` pair per line; buyer
    /// i is line i (at least --buyers lines). Wins over --jwt-secret.
    #[arg(long)]
    pub tokens_file: Option<std::path::PathBuf>,
    /// Gateways of the tool's own stack [default: 1]. The buyers'
    /// connections are spread evenly over them, as a load balancer would.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=8))]
    pub gateways: Option<u32>,
    /// Processors of the tool's own stack [default: 2].
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=16))]
    pub processors: Option<u32>,
    /// Run the tool's own stack on a private 3-node JetStream cluster, the
    /// stream replicated on all three nodes (instead of the local NATS).
    #[arg(long)]
    pub nats_cluster: bool,
    /// Inject a fault mid-burst (own stack only); verification must still pass.
    #[arg(long, value_enum)]
    pub chaos: Option<Chaos>,
    /// Simultaneous buyers.
    #[arg(long, default_value_t = 50_000, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub buyers: u32,
    /// Units in each drop the tool creates.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(0..=100_000_000))]
    pub stock: u32,
    /// Drops the tool creates, one SKU each (the sizes of one model), each
    /// with `--stock` units and `--per-user-limit`; every buyer buys one of
    /// them, picked from the crowd's seed, the crowd spread evenly.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=i64::from(crate::setup::SKUS_MAX)))]
    pub skus: u32,
    /// Most units one user may win of each drop.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub per_user_limit: u32,
    #[command(flatten)]
    pub crowd: CrowdArgs,
    /// HTTP/1.1 keep-alive connections shared by all buyers (at most this
    /// many purchases in flight). Real buyers each have their own; a few
    /// hundred keep the generator's own cost bounded on a shared machine.
    #[arg(long, default_value_t = 800, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub connections: u32,
    /// Seconds each buyer asks to wait for its decision (`Prefer: wait=N`;
    /// 0 sends `Prefer: respond-async`, and every 202 is then read by GET).
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(0..=30))]
    pub wait_s: u64,
    /// Use this existing drop instead of creating any (its stock is read);
    /// a single SKU, so not with `--skus` above 1.
    #[arg(long)]
    pub sku: Option<String>,
    /// Postgres, to create the drops.
    #[arg(long, env = "DATABASE_URL", default_value = dropline_store::DEFAULT_DATABASE_URL)]
    pub database_url: String,
    /// Milliseconds between the processors owning every new drop's
    /// partition (waited for first, 30 s at most) and the burst. Real drops
    /// are created ahead of their sale; this lets the new consumers settle
    /// too, so the burst measures selling, not setup.
    #[arg(long, default_value_t = 1_000)]
    pub settle_ms: u64,
    /// Also write the report as JSON to this file.
    #[arg(long)]
    pub json: Option<std::path::PathBuf>,
    /// Keep the database of the tool's own stack (it is dropped after a
    /// verified run; a failed run always keeps it).
    #[arg(long)]
    pub keep_database: bool,
    /// Where to write the HTML report with charts.
    #[arg(long, default_value = "target/load-test/report.html")]
    pub html: std::path::PathBuf,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_outside_zero_to_one_are_refused() {
        assert!(share("0.5").is_ok());
        assert!(share("1.5").is_err());
        assert!(share("-0.1").is_err());
        assert!(share("lots").is_err());
    }
}
