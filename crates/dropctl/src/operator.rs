//! Who is acting: the operator recorded with every entry dropctl puts in a
//! drop's line (`--operator`, else `DROPLINE_OPERATOR`, else `$USER`, else
//! `operator`), and the operation ids that make a retried entry count once.

use dropline_core::{OperationId, OperatorId};

/// The operator's name when neither the flag, the environment nor `$USER`
/// gives one.
const OPERATOR_FALLBACK: &str = "operator";

#[derive(Debug, Clone, clap::Args)]
pub struct OperatorArgs {
    /// Who is acting, recorded with the entry [default: $USER, else "operator"].
    #[arg(long, env = "DROPLINE_OPERATOR", value_name = "NAME")]
    operator: Option<String>,
}

impl OperatorArgs {
    /// The operator, parsed (a bad `--operator` is the caller's error).
    pub fn resolve(&self) -> anyhow::Result<OperatorId> {
        let name = operator_name(self.operator.clone(), std::env::var("USER").ok());
        Ok(OperatorId::parse(name)?)
    }
}

/// The name given, else the login, else [`OPERATOR_FALLBACK`]; a blank one
/// counts as not given.
fn operator_name(given: Option<String>, user: Option<String>) -> String {
    let present = |name: &Option<String>| name.as_ref().is_some_and(|n| !n.trim().is_empty());
    if present(&given) {
        given.unwrap_or_default()
    } else if present(&user) {
        user.unwrap_or_default()
    } else {
        OPERATOR_FALLBACK.to_string()
    }
}

/// A fresh operation id for an action of `kind` (`close-<uuid>`).
pub fn new_operation_id(kind: &str) -> anyhow::Result<OperationId> {
    Ok(OperationId::parse(format!(
        "{kind}-{}",
        uuid::Uuid::new_v4().simple()
    ))?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_flag_wins_then_the_login_then_the_fallback() {
        let some = |s: &str| Some(s.to_string());
        assert_eq!(operator_name(some("ana"), some("root")), "ana");
        assert_eq!(operator_name(None, some("root")), "root");
        assert_eq!(operator_name(some("  "), some("root")), "root");
        assert_eq!(operator_name(None, None), OPERATOR_FALLBACK);
        assert_eq!(operator_name(None, some("")), OPERATOR_FALLBACK);
    }

    #[test]
    fn operation_ids_are_fresh_and_valid() {
        let a = new_operation_id("restock").expect("an id");
        let b = new_operation_id("restock").expect("an id");
        assert_ne!(a, b);
        assert!(a.as_str().starts_with("restock-"));
    }
}
