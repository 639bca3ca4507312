//! Throwaway databases: created and migrated for one test, stack or bench
//! run, dropped after it.

use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use dropline_store::Store;
use sqlx::{Connection as _, Executor as _};

/// Creates the database `name` on the server at `base` (a URL without a
/// database part), applies dropline's migrations, and returns its URL.
pub async fn create_database(base: &str, name: &str) -> anyhow::Result<String> {
    check_name(name)?;
    let url = format!("{base}/{name}");
    Store::migrate(&url)
        .await
        .with_context(|| format!("create and migrate {name}"))?;
    Ok(url)
}

/// Creates the empty database `name` on the server at `base`: for designs
/// with tables of their own.
pub async fn create_empty_database(base: &str, name: &str) -> anyhow::Result<()> {
    check_name(name)?;
    let mut admin = admin(base).await?;
    admin
        .execute(format!("CREATE DATABASE \"{name}\"").as_str())
        .await
        .with_context(|| format!("create database {name}"))?;
    admin.close().await?;
    Ok(())
}

/// The database part of a connection URL.
pub fn database_name(url: &str) -> &str {
    let name = url.rsplit_once('/').map_or(url, |(_, name)| name);
    name.split('?').next().unwrap_or(name)
}

/// Drops `name` on the server at `base`; `WITH (FORCE)` ends any session
/// still connected.
pub async fn drop_database(base: &str, name: &str) -> anyhow::Result<()> {
    check_name(name)?;
    let mut admin = admin(base).await?;
    admin
        .execute(format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)").as_str())
        .await
        .with_context(|| format!("drop database {name}"))?;
    admin.close().await?;
    Ok(())
}

/// The process ids of the server's backends connected to `name` (the
/// server runs on this machine for them to mean anything here).
pub async fn backend_pids(base: &str, name: &str) -> anyhow::Result<Vec<u32>> {
    let mut admin = admin(base).await?;
    let pids: Vec<i32> = sqlx::query_scalar("SELECT pid FROM pg_stat_activity WHERE datname = $1")
        .bind(name)
        .fetch_all(&mut admin)
        .await
        .with_context(|| format!("list the backends of {name}"))?;
    admin.close().await?;
    Ok(pids
        .into_iter()
        .filter_map(|pid| u32::try_from(pid).ok())
        .collect())
}

/// A connection to the server's `postgres` database, to create and drop others.
async fn admin(base: &str) -> anyhow::Result<sqlx::PgConnection> {
    let admin_url = format!("{base}/postgres");
    sqlx::PgConnection::connect(&admin_url)
        .await
        .with_context(|| format!("connect to {admin_url}"))
}

/// `<prefix>_<unix seconds>_<random>`: a name [`prune_databases`] can date.
pub fn dated_name(prefix: &str) -> String {
    format!("{prefix}_{}_{}", unix_now(), crate::unique_suffix())
}

/// Drops the databases named by [`dated_name`] with `prefix` that are older
/// than `max_age_s`: what crashed or killed runs left behind. Best effort.
pub async fn prune_databases(base: &str, prefix: &str, max_age_s: u64) {
    let Ok(mut admin) = admin(base).await else {
        return;
    };
    let names: Vec<String> =
        sqlx::query_scalar("SELECT datname FROM pg_database WHERE starts_with(datname, $1)")
            .bind(format!("{prefix}_"))
            .fetch_all(&mut admin)
            .await
            .unwrap_or_default();
    let _ = admin.close().await;
    let now = unix_now();
    for name in names {
        let created = name
            .strip_prefix(&format!("{prefix}_"))
            .and_then(|rest| rest.split('_').next())
            .and_then(|t| t.parse::<u64>().ok());
        if created.is_some_and(|t| t.saturating_add(max_age_s) < now) {
            let _ = drop_database(base, &name).await;
        }
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Names are made by the tools from `[a-z0-9_]`; anything else is not one
/// of theirs, and is never interpolated into SQL.
fn check_name(name: &str) -> anyhow::Result<()> {
    anyhow::ensure!(
        !name.is_empty()
            && name.len() <= 63
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'),
        "{name:?} is not a database name the tools make"
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_outside_the_tools_alphabet_are_refused() {
        assert!(check_name("dropline_load_0a1b2c").is_ok());
        for bad in [
            "",
            "x\"; DROP DATABASE postgres; --",
            "Upper",
            "a-b",
            &"a".repeat(64),
        ] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_dated_name_carries_its_creation_time() {
        let name = dated_name("dropline_test");
        let stamp: u64 = name["dropline_test_".len()..]
            .split('_')
            .next()
            .and_then(|t| t.parse().ok())
            .expect("a unix time after the prefix");
        assert!(stamp.abs_diff(unix_now()) < 5);
        assert_eq!(database_name(&format!("postgres://h:1/{name}?x=1")), name);
    }
}
