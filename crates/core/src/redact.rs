//! Connection strings as they may appear in messages and logs: with any
//! password replaced. Shared by every binary that names its services.

/// `url` (or a comma-separated list of them, as a NATS cluster is given)
/// with each password replaced by `***`.
pub fn redact(url: &str) -> String {
    url.split(',').map(redact_one).collect::<Vec<_>>().join(",")
}

fn redact_one(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let credentials = &url[scheme + 3..at];
            let shown = match credentials.split_once(':') {
                Some((user, _)) => format!("{user}:***"),
                // A lone name is a user in Postgres, a token in NATS.
                None if url.starts_with("postgres") => credentials.to_string(),
                None => "***".to_string(),
            };
            format!("{}{shown}{}", &url[..scheme + 3], &url[at..])
        }
        _ => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::redact;

    #[test]
    fn passwords_never_show() {
        assert_eq!(
            redact("postgres://ops:s3cret@db:5432/dropline?sslmode=verify-full"),
            "postgres://ops:***@db:5432/dropline?sslmode=verify-full"
        );
        assert_eq!(
            redact("nats://gw:a@n1:4222,nats://gw:b@n2:4222"),
            "nats://gw:***@n1:4222,nats://gw:***@n2:4222"
        );
        assert_eq!(redact("nats://127.0.0.1:4222"), "nats://127.0.0.1:4222");
        assert_eq!(redact("nats://t0ken@host"), "nats://***@host");
        assert_eq!(redact("postgres://ops@db/x"), "postgres://ops@db/x");
    }
}
