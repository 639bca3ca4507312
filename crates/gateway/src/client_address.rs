//! Which address a request comes from, for the per-address rate limit:
//! the TCP peer, unless the peer is one of the configured trusted proxies,
//! in which case `X-Forwarded-For` names the client.
//!
//! Must never let a client choose its own address: `X-Forwarded-For` is
//! read only from a trusted proxy, right to left (each proxy appends the
//! address it saw), skipping the trusted proxies themselves; the first
//! address that is not one of them is the client. A header that cannot be
//! read leaves the peer as the address.

use std::net::IpAddr;

use axum::http::HeaderMap;
use ipnet::IpNet;

/// The proxies (addresses or CIDR blocks) whose `X-Forwarded-For` is believed.
#[derive(Debug, Clone, Default)]
pub struct TrustedProxies(Vec<IpNet>);

impl TrustedProxies {
    pub fn new(proxies: Vec<IpNet>) -> Self {
        Self(proxies)
    }

    fn trusts(&self, address: IpAddr) -> bool {
        self.0.iter().any(|net| net.contains(&address))
    }

    /// The client's address for a request from `peer` with `headers`.
    pub fn client_of(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        if !self.trusts(peer) {
            return peer;
        }
        let mut client = peer;
        for value in headers.get_all("x-forwarded-for").iter().rev() {
            let Ok(list) = value.to_str() else {
                return peer;
            };
            for hop in list.rsplit(',') {
                let Ok(address) = hop.trim().parse::<IpAddr>() else {
                    return peer;
                };
                client = address;
                if !self.trusts(address) {
                    return address;
                }
            }
        }
        client
    }
}

/// One trusted proxy as configured: an address (`10.0.0.7`) or a block
/// (`10.0.0.0/8`).
pub fn parse_trusted_proxy(text: &str) -> Result<IpNet, String> {
    let text = text.trim();
    text.parse::<IpNet>()
        .or_else(|_| text.parse::<IpAddr>().map(IpNet::from))
        .map_err(|_| format!("{text:?}: an IP address or a CIDR block such as 10.0.0.0/8"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(forwarded: &[&str]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for value in forwarded {
            headers.append("x-forwarded-for", value.parse().unwrap());
        }
        headers
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn only_a_trusted_proxy_names_the_client() {
        let proxies = TrustedProxies::new(vec![
            parse_trusted_proxy("10.0.0.0/8").unwrap(),
            parse_trusted_proxy("192.0.2.1").unwrap(),
        ]);
        let forged = headers(&["203.0.113.9"]);
        assert_eq!(
            proxies.client_of(ip("198.51.100.4"), &forged),
            ip("198.51.100.4")
        );
        assert_eq!(
            proxies.client_of(ip("10.1.2.3"), &forged),
            ip("203.0.113.9")
        );
        // A client's own forged entry sits left of what the proxies saw.
        let chain = headers(&["1.1.1.1, 203.0.113.9", "192.0.2.1"]);
        assert_eq!(proxies.client_of(ip("10.1.2.3"), &chain), ip("203.0.113.9"));
        assert_eq!(
            proxies.client_of(ip("10.1.2.3"), &headers(&["10.9.9.9"])),
            ip("10.9.9.9")
        );
        assert_eq!(
            proxies.client_of(ip("10.1.2.3"), &headers(&["nonsense"])),
            ip("10.1.2.3")
        );
        assert_eq!(
            proxies.client_of(ip("10.1.2.3"), &HeaderMap::new()),
            ip("10.1.2.3")
        );
        assert_eq!(
            TrustedProxies::default().client_of(ip("10.1.2.3"), &forged),
            ip("10.1.2.3")
        );
        assert!(parse_trusted_proxy("10.0.0.0/33").is_err());
        assert!(parse_trusted_proxy("::1").is_ok());
    }
}
