//! Free TCP ports on loopback.

/// A port nothing listens on right now. Another process may take it before
/// the caller binds it; every caller here binds it at once.
pub fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}
