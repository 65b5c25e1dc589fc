//! The outbound client for deliveries to tenants' receivers, safe against
//! SSRF: `https` only (plain http only for loopback when allowed), no
//! credentials in URLs, no redirects followed, and no private, loopback,
//! link-local (cloud metadata), CGNAT, multicast or unspecified address
//! unless an operator allows its network. Addresses are checked where they
//! are used: a resolver drops refused addresses at connection time, so a
//! name that resolves differently later (DNS rebinding) gains nothing.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::StreamExt;
use reqwest::Url;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use reqwest::header::{HeaderMap, RETRY_AFTER};

/// Bytes of the receiver's answer kept for the attempt log.
pub const SNIPPET_BYTES: usize = 512;

/// A network in CIDR notation (`10.1.0.0/16`, `fd00::/8`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpNetwork {
    addr: IpAddr,
    prefix: u8,
}

impl IpNetwork {
    /// Whether `ip` is inside (IPv4-mapped IPv6 addresses count as IPv4).
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, canonical(ip)) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix.min(32)))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix.min(128)))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

impl FromStr for IpNetwork {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = addr
            .parse()
            .map_err(|_| format!("'{s}' is not an IP network such as 10.0.0.0/8"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("'{s}' has a prefix length outside 0..={max}"))?,
            None => max,
        };
        // An IPv4-mapped network (::ffff:10.0.0.0/104) is the IPv4 network
        // it carries, as addresses are compared in their IPv4 form.
        Ok(match (addr, canonical(addr)) {
            (IpAddr::V6(_), IpAddr::V4(v4)) if prefix >= 96 => Self {
                addr: IpAddr::V4(v4),
                prefix: prefix - 96,
            },
            _ => Self { addr, prefix },
        })
    }
}

impl fmt::Display for IpNetwork {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// IPv4-mapped and -compatible IPv6 addresses as the IPv4 address they carry.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let seg = v6.segments();
                // ::a.b.c.d (deprecated "compatible" form), but not :: and ::1.
                if seg[..6].iter().all(|s| *s == 0) && u128::from(v6) > 1 {
                    IpAddr::V4(Ipv4Addr::from(u32::try_from(u128::from(v6)).unwrap_or(0)))
                } else {
                    IpAddr::V6(v6)
                }
            }
        },
        v4 => v4,
    }
}

/// What kind of address is refused, if any.
fn restricted(ip: IpAddr) -> Option<&'static str> {
    match canonical(ip) {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            if v4.is_loopback() {
                Some("loopback")
            } else if v4.is_unspecified() || o[0] == 0 {
                Some("unspecified")
            } else if v4.is_private() {
                Some("private")
            } else if v4.is_link_local() {
                Some("link-local (cloud metadata)")
            } else if o[0] == 100 && (o[1] & 0xc0) == 64 {
                Some("shared (CGNAT)")
            } else if v4.is_multicast() || v4.is_broadcast() || o[0] >= 240 {
                Some("multicast, broadcast or reserved")
            } else if o[0] == 192 && o[1] == 0 && o[2] == 0 {
                Some("IETF protocol assignment")
            } else {
                None
            }
        }
        IpAddr::V6(v6) => {
            let first = v6.segments()[0];
            if v6 == Ipv6Addr::LOCALHOST {
                Some("loopback")
            } else if v6.is_unspecified() {
                Some("unspecified")
            } else if first & 0xfe00 == 0xfc00 {
                Some("private (unique local)")
            } else if first & 0xffc0 == 0xfe80 {
                Some("link-local")
            } else if first & 0xff00 == 0xff00 {
                Some("multicast")
            } else if first == 0x0064 && v6.segments()[1] == 0xff9b {
                Some("NAT64")
            } else if first == 0x2002 {
                Some("6to4")
            } else {
                None
            }
        }
    }
}

/// Why a URL or address is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UrlRefusal(String);

impl UrlRefusal {
    /// The error code answered.
    pub fn code(&self) -> &'static str {
        "url_not_allowed"
    }
}

impl fmt::Display for UrlRefusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Which receiver URLs and addresses deliveries may reach.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboundPolicy {
    /// Plain `http` to loopback hosts, and loopback addresses (development).
    pub allow_insecure_loopback: bool,
    /// Networks allowed even though they are private or otherwise refused.
    pub allowed_networks: Vec<IpNetwork>,
}

impl OutboundPolicy {
    /// Whether a delivery may connect to `ip`.
    pub fn allows_ip(&self, ip: IpAddr) -> bool {
        self.refusal(ip).is_none()
    }

    fn refusal(&self, ip: IpAddr) -> Option<&'static str> {
        if self.allowed_networks.iter().any(|n| n.contains(ip)) {
            return None;
        }
        match restricted(ip) {
            Some("loopback") if self.allow_insecure_loopback => None,
            other => other,
        }
    }

    /// Checks a receiver URL (scheme, credentials, an IP-literal host).
    /// Names are checked again, on their resolved addresses, at delivery.
    pub fn check_url(&self, url: &str) -> Result<Url, UrlRefusal> {
        let refuse = |why: String| Err(UrlRefusal(format!("url {why}")));
        let Ok(parsed) = Url::parse(url) else {
            return refuse("must be an absolute URL such as https://app.example.com/hooks.".into());
        };
        if !parsed.username().is_empty() || parsed.password().is_some() {
            return refuse("cannot carry credentials (user:password@).".into());
        }
        let Some(host) = parsed.host() else {
            return refuse("must name a host.".into());
        };
        let ip = match host {
            url::Host::Ipv4(v4) => Some(IpAddr::V4(v4)),
            url::Host::Ipv6(v6) => Some(IpAddr::V6(v6)),
            url::Host::Domain(_) => None,
        };
        let loopback_name = matches!(host, url::Host::Domain(d) if is_localhost(d));
        let loopback = loopback_name || ip.is_some_and(|ip| restricted(ip) == Some("loopback"));
        match parsed.scheme() {
            "https" => {}
            "http" if loopback && self.allow_insecure_loopback => {}
            "http" => {
                return refuse(
                    "must use https (plain http only for loopback receivers in development)."
                        .into(),
                );
            }
            other => return refuse(format!("must use https, not {other}.")),
        }
        if loopback_name && !self.allow_insecure_loopback {
            return refuse("cannot be a loopback host.".into());
        }
        if let Some(ip) = ip
            && let Some(kind) = self.refusal(ip)
        {
            return refuse(format!(
                "points at a {kind} address ({ip}); allow its network in PATCHBAY_WEBHOOK_ALLOWED_NETWORKS if that is intended."
            ));
        }
        Ok(parsed)
    }
}

/// `localhost`, `*.localhost` (RFC 6761), with or without the final dot.
fn is_localhost(domain: &str) -> bool {
    let d = domain.trim_end_matches('.').to_ascii_lowercase();
    d == "localhost" || d.ends_with(".localhost")
}

/// Resolves names and keeps only the addresses the policy allows.
struct PolicyResolver(Arc<OutboundPolicy>);

impl Resolve for PolicyResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let policy = self.0.clone();
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let found: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let allowed: Vec<SocketAddr> = found
                .iter()
                .copied()
                .filter(|a| policy.allows_ip(a.ip()))
                .collect();
            if allowed.is_empty() {
                let err: Box<dyn std::error::Error + Send + Sync> = if found.is_empty() {
                    format!("{host} has no address").into()
                } else {
                    format!("{host} resolves only to addresses deliveries may not reach").into()
                };
                return Err(err);
            }
            let addrs: Addrs = Box::new(allowed.into_iter());
            Ok(addrs)
        })
    }
}

/// What one delivery request came to.
#[derive(Debug, Clone, PartialEq)]
pub struct SendOutcome {
    /// The receiver's status, if it answered.
    pub status: Option<u16>,
    /// How long it took.
    pub duration: Duration,
    /// What went wrong without an answer (refused, DNS, connection, timeout).
    pub error: Option<String>,
    /// The start of the answer's body (lossy UTF-8).
    pub snippet: String,
    /// A 429/503 answer's `Retry-After`.
    pub retry_after: Option<Duration>,
    /// The policy refused the address.
    pub refused: bool,
}

impl SendOutcome {
    /// A 2xx answer.
    pub fn delivered(&self) -> bool {
        self.status.is_some_and(|s| (200..300).contains(&s))
    }
}

/// Sends deliveries.
#[derive(Debug, Clone)]
pub struct WebhookSender {
    client: reqwest::Client,
    policy: Arc<OutboundPolicy>,
}

impl WebhookSender {
    /// A sender under `policy`, each request limited to `timeout`.
    pub fn new(policy: OutboundPolicy, timeout: Duration) -> Self {
        let policy = Arc::new(policy);
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            // Straight to the receiver: a proxy would resolve (and reach) the
            // receiver's name where this policy cannot check it.
            .no_proxy()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(5)))
            .dns_resolver(Arc::new(PolicyResolver(policy.clone())))
            .pool_idle_timeout(Duration::from_secs(30))
            .build()
            .expect("a reqwest client with rustls builds");
        Self { client, policy }
    }

    /// The policy.
    pub fn policy(&self) -> &OutboundPolicy {
        &self.policy
    }

    /// POSTs `body` to `url`.
    pub async fn send(&self, url: &str, headers: HeaderMap, body: Bytes) -> SendOutcome {
        let started = Instant::now();
        let failed = |error: String, refused: bool| SendOutcome {
            status: None,
            duration: started.elapsed(),
            error: Some(error),
            snippet: String::new(),
            retry_after: None,
            refused,
        };
        let parsed = match self.policy.check_url(url) {
            Ok(u) => u,
            Err(e) => return failed(format!("refused: {e}"), true),
        };
        let response = match self
            .client
            .post(parsed)
            .headers(headers)
            .body(body)
            .send()
            .await
        {
            Ok(r) => r,
            Err(e) => {
                // The URL may carry the receiver's own token: keep it out.
                let e = e.without_url();
                let refused = error_chain(&e).contains("may not reach");
                let kind = if e.is_timeout() {
                    "timed out"
                } else if e.is_connect() {
                    "could not connect"
                } else {
                    "request failed"
                };
                return failed(format!("{kind}: {}", error_chain(&e)), refused);
            }
        };
        let status = response.status().as_u16();
        let retry_after = if status == 429 || status == 503 {
            response
                .headers()
                .get(RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(parse_retry_after)
        } else {
            None
        };
        let mut snippet = Vec::with_capacity(SNIPPET_BYTES);
        let mut stream = response.bytes_stream();
        while snippet.len() < SNIPPET_BYTES {
            match stream.next().await {
                Some(Ok(chunk)) => {
                    let take = (SNIPPET_BYTES - snippet.len()).min(chunk.len());
                    snippet.extend_from_slice(&chunk[..take]);
                }
                _ => break,
            }
        }
        SendOutcome {
            status: Some(status),
            duration: started.elapsed(),
            error: None,
            snippet: String::from_utf8_lossy(&snippet).into_owned(),
            retry_after,
            refused: false,
        }
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

/// `Retry-After` as seconds or an HTTP date (capped at a day).
pub fn parse_retry_after(value: &str) -> Option<Duration> {
    let value = value.trim();
    let wait = if let Ok(secs) = value.parse::<u64>() {
        Duration::from_secs(secs)
    } else {
        let at = httpdate::parse_http_date(value).ok()?;
        at.duration_since(std::time::SystemTime::now())
            .unwrap_or_default()
    };
    Some(wait.min(Duration::from_secs(24 * 3600)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use wiremock::matchers::method;
    use wiremock::{Mock, MockServer, ResponseTemplate};

    fn policy(loopback: bool, allowed: &[&str]) -> OutboundPolicy {
        OutboundPolicy {
            allow_insecure_loopback: loopback,
            allowed_networks: allowed.iter().map(|n| n.parse().unwrap()).collect(),
        }
    }

    #[test]
    fn urls_are_checked() {
        let strict = policy(false, &[]);
        let dev = policy(true, &[]);
        let allowing = policy(false, &["10.1.0.0/16", "fd00::/8"]);
        let refused = [
            "http://169.254.169.254/latest/meta-data",
            "https://169.254.169.254/",
            "https://[fd00:ec2::254]/",
            "http://example.com/hook",
            "https://10.0.0.1/hook",
            "https://172.16.5.4/",
            "https://192.168.1.1/",
            "https://100.64.0.1/",
            "https://0.0.0.0/",
            "https://127.0.0.1/",
            "https://[::1]/",
            "https://[::ffff:127.0.0.1]/",
            "https://[::ffff:10.0.0.1]/",
            "https://[fe80::1]/",
            "https://[fc00::1]/",
            "https://224.0.0.1/",
            "https://255.255.255.255/",
            "https://user:pw@example.com/",
            "https://user@example.com/",
            "ftp://example.com/",
            "file:///etc/passwd",
            "gopher://example.com/",
            "not a url",
            "https://localhost/",
            "http://localhost:8080/",
            "https://[64:ff9b::a00:1]/",
            "https://[2002:a00:1::]/",
            // Other spellings of loopback and private addresses.
            "https://2130706433/",
            "https://0x7f.1/",
            "https://0177.0.0.1/",
            "https://127.1/",
            "https://[::127.0.0.1]/",
            "https://[::ffff:169.254.169.254]/",
            "https://[0:0:0:0:0:ffff:a00:1]/",
            "https://[::]/",
            "https://localhost./",
            "https://LOCALHOST/",
            "https://api.localhost/",
            "https://[ff02::1]/",
            "https://240.0.0.1/",
            "https://100.127.255.254/",
            "https://",
            "mailto:ops@example.com",
        ];
        for url in refused {
            let e = strict.check_url(url).unwrap_err();
            assert_eq!(e.code(), "url_not_allowed", "{url}");
        }
        for url in [
            "https://example.com/hook",
            "https://93.184.216.34/hook",
            "https://[2606:2800:220:1::]/",
        ] {
            assert!(strict.check_url(url).is_ok(), "{url}");
        }
        for url in [
            "http://127.0.0.1:9/x",
            "http://localhost:8080/",
            "http://[::1]/",
        ] {
            assert!(dev.check_url(url).is_ok(), "{url}");
        }
        assert!(dev.check_url("http://localhost./").is_ok());
        assert!(dev.check_url("http://10.0.0.1/").is_err());
        assert!(dev.check_url("http://[fd00:ec2::254]/").is_err());
        assert!(dev.check_url("http://[::ffff:127.0.0.1]/").is_ok());
        assert!(dev.check_url("ftp://127.0.0.1/").is_err());
        assert!(dev.check_url("http://user:pw@localhost/").is_err());
        // Next to a refused range, still public.
        for url in [
            "https://100.128.0.1/",
            "https://172.32.0.1/",
            "https://169.255.0.1/",
            "https://11.0.0.1/",
            "https://[fe00::1]/",
        ] {
            assert!(strict.check_url(url).is_ok(), "{url}");
        }
        assert!(dev.check_url("https://169.254.169.254/").is_err());
        assert!(allowing.check_url("https://10.1.2.3/").is_ok());
        assert!(allowing.check_url("https://10.2.0.1/").is_err());
        assert!(allowing.check_url("https://[fd12::1]/").is_ok());
        assert!("10.0.0.0/33".parse::<IpNetwork>().is_err());
        assert!("nonsense".parse::<IpNetwork>().is_err());
        assert!(policy(false, &["0.0.0.0/0"]).allows_ip("10.0.0.1".parse().unwrap()));
    }

    #[test]
    fn refusals_name_the_url_and_the_reason() {
        let strict = policy(false, &[]);
        for (url, says) in [
            ("http://example.com/", "https"),
            ("https://u:p@example.com/", "credentials"),
            ("https://10.0.0.1/", "private address (10.0.0.1)"),
            ("https://169.254.169.254/", "link-local"),
            ("https://[::ffff:127.0.0.1]/", "loopback"),
            ("https://localhost/", "loopback"),
            ("https://100.64.0.1/", "CGNAT"),
            ("ftp://example.com/", "not ftp"),
        ] {
            let e = strict.check_url(url).unwrap_err().to_string();
            assert!(e.starts_with("url "), "{e}");
            assert!(e.contains(says), "{url}: {e}");
            assert!(!e.contains(":p@"), "{e}");
        }
    }

    #[test]
    fn networks_parse_and_contain() {
        let n = |s: &str| s.parse::<IpNetwork>().unwrap();
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert!(n("10.0.0.0/8").contains(ip("10.255.1.2")));
        assert!(!n("10.0.0.0/8").contains(ip("11.0.0.0")));
        assert!(n(" 192.168.1.7 ").contains(ip("192.168.1.7")));
        assert!(!n("192.168.1.7").contains(ip("192.168.1.8")));
        assert!(n("0.0.0.0/0").contains(ip("255.255.255.255")));
        assert!(!n("0.0.0.0/0").contains(ip("::1")));
        assert!(n("::/0").contains(ip("2001:db8::1")));
        assert!(n("fd00::/8").contains(ip("fdff::1")));
        assert!(!n("fd00::/8").contains(ip("fc00::1")));
        assert!(n("2001:db8::/32").contains(ip("2001:db8:ffff::1")));
        assert!(n("::1/128").contains(ip("::1")));
        // IPv4-mapped addresses are their IPv4 address, on either side.
        assert!(n("10.0.0.0/8").contains(ip("::ffff:10.1.2.3")));
        assert!(n("::ffff:10.0.0.0/104").contains(ip("10.1.2.3")));
        assert!(n("::ffff:10.0.0.0/104").contains(ip("::ffff:10.1.2.3")));
        assert!(!n("::ffff:10.0.0.0/104").contains(ip("11.1.2.3")));
        assert_eq!(n("::ffff:10.0.0.0/104"), n("10.0.0.0/8"));
        // Shorter than the mapped prefix it stays an IPv6 network, and never panics.
        let wide = n("::ffff:0.0.0.0/80");
        assert!(!wide.contains(ip("10.0.0.1")));
        assert!(wide.contains(ip("0:0:0:0:0:1::1")));
        assert_eq!(n("172.16.0.0/12").to_string(), "172.16.0.0/12");
        for bad in [
            "",
            "10.0.0.0/",
            "10.0.0.0/-1",
            "::/129",
            "10.0.0/8",
            "example.com/8",
        ] {
            assert!(bad.parse::<IpNetwork>().is_err(), "{bad}");
        }
        let p = policy(false, &["127.0.0.0/8", "169.254.169.254/32"]);
        assert!(p.allows_ip(ip("127.0.0.1")));
        assert!(p.allows_ip(ip("::ffff:127.0.0.1")));
        assert!(p.allows_ip(ip("169.254.169.254")));
        assert!(!p.allows_ip(ip("169.254.169.253")));
        assert!(!p.allows_ip(ip("::1")));
        assert!(p.allows_ip(ip("8.8.8.8")));
    }

    #[tokio::test]
    async fn loopback_is_reached_only_when_allowed() {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .respond_with(ResponseTemplate::new(204))
            .mount(&server)
            .await;
        let dev = WebhookSender::new(policy(true, &[]), Duration::from_secs(5));
        let out = dev
            .send(
                &format!("{}/hook", server.uri()),
                HeaderMap::new(),
                Bytes::from_static(b"{}"),
            )
            .await;
        assert!(out.delivered(), "{out:?}");
        // By name: the resolver's answer is checked too.
        let port = server.address().port();
        let out = dev
            .send(
                &format!("http://localhost:{port}/hook"),
                HeaderMap::new(),
                Bytes::new(),
            )
            .await;
        assert!(out.delivered(), "{out:?}");
        assert_eq!(server.received_requests().await.unwrap().len(), 2);

        let strict = WebhookSender::new(policy(false, &[]), Duration::from_secs(5));
        let out = strict
            .send(
                &format!("{}/hook", server.uri()),
                HeaderMap::new(),
                Bytes::new(),
            )
            .await;
        assert!(out.refused && !out.delivered(), "{out:?}");
        assert_eq!(
            server.received_requests().await.unwrap().len(),
            2,
            "no request made"
        );
    }

    #[tokio::test]
    async fn the_resolver_drops_refused_addresses() {
        // Plain http to localhost is allowed by the URL rule only in development;
        // here https passes the URL rule and the resolver must refuse 127.0.0.1.
        let strict = WebhookSender::new(
            OutboundPolicy {
                allow_insecure_loopback: false,
                allowed_networks: Vec::new(),
            },
            Duration::from_secs(5),
        );
        let resolver = PolicyResolver(Arc::new(strict.policy().clone()));
        let err = resolver
            .resolve(Name::from_str("localhost").unwrap())
            .await
            .err()
            .expect("localhost resolves only to loopback");
        assert!(err.to_string().contains("may not reach"), "{err}");
        // Allowed, the same name resolves to loopback addresses only.
        for allowing in [
            policy(true, &[]),
            policy(false, &["127.0.0.0/8", "::1/128"]),
        ] {
            let addrs: Vec<SocketAddr> = PolicyResolver(Arc::new(allowing))
                .resolve(Name::from_str("localhost").unwrap())
                .await
                .unwrap()
                .collect();
            assert!(!addrs.is_empty());
            assert!(addrs.iter().all(|a| a.ip().is_loopback()), "{addrs:?}");
        }
    }

    #[tokio::test]
    async fn refused_and_failed_sends_say_why_without_the_url() {
        let strict = WebhookSender::new(policy(false, &[]), Duration::from_secs(2));
        let out = strict
            .send(
                "https://169.254.169.254/latest/meta-data?token=s3cr3t",
                HeaderMap::new(),
                Bytes::new(),
            )
            .await;
        assert!(out.refused && out.status.is_none(), "{out:?}");
        assert!(
            out.error.as_deref().unwrap().starts_with("refused"),
            "{out:?}"
        );
        // Nothing listens on a port just released: a connection error.
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let dev = WebhookSender::new(policy(true, &[]), Duration::from_secs(2));
        let out = dev
            .send(
                &format!("http://127.0.0.1:{port}/hook?token=s3cr3t"),
                HeaderMap::new(),
                Bytes::new(),
            )
            .await;
        let error = out.error.clone().unwrap();
        assert!(!out.refused && out.status.is_none(), "{out:?}");
        assert!(error.starts_with("could not connect"), "{error}");
        assert!(!error.contains("s3cr3t"), "{error}");
    }

    #[tokio::test]
    async fn answers_are_recorded_without_following_redirects() {
        let server = MockServer::start().await;
        let sender = WebhookSender::new(policy(true, &[]), Duration::from_millis(300));
        let cases = [
            (
                "/429",
                ResponseTemplate::new(429).insert_header("Retry-After", "7"),
            ),
            (
                "/503",
                ResponseTemplate::new(503).insert_header(
                    "Retry-After",
                    httpdate::fmt_http_date(
                        std::time::SystemTime::now() + Duration::from_secs(120),
                    )
                    .as_str(),
                ),
            ),
            (
                "/302",
                ResponseTemplate::new(302).insert_header("Location", "http://169.254.169.254/"),
            ),
            (
                "/big",
                ResponseTemplate::new(500).set_body_string("x".repeat(100_000)),
            ),
            (
                "/slow",
                ResponseTemplate::new(200).set_delay(Duration::from_secs(2)),
            ),
        ];
        for (path, template) in cases {
            Mock::given(wiremock::matchers::path(path))
                .respond_with(template)
                .mount(&server)
                .await;
        }
        let (sender, base) = (&sender, server.uri());
        let send = |p: &str| {
            let url = format!("{base}{p}");
            async move { sender.send(&url, HeaderMap::new(), Bytes::new()).await }
        };
        let out = send("/429").await;
        assert_eq!(
            (out.status, out.retry_after),
            (Some(429), Some(Duration::from_secs(7)))
        );
        let out = send("/503").await;
        let wait = out.retry_after.unwrap();
        assert!(
            wait > Duration::from_secs(100) && wait <= Duration::from_secs(120),
            "{wait:?}"
        );
        let out = send("/302").await;
        assert_eq!(out.status, Some(302));
        assert!(!out.delivered() && out.retry_after.is_none());
        let out = send("/big").await;
        assert_eq!(out.snippet, "x".repeat(SNIPPET_BYTES));
        assert_eq!(out.status, Some(500));
        let out = send("/slow").await;
        assert!(
            out.status.is_none() && out.error.as_deref().unwrap().starts_with("timed out"),
            "{out:?}"
        );
        // The 302 was answered once and its Location never requested.
        let requests = server.received_requests().await.unwrap();
        assert_eq!(
            requests.iter().filter(|r| r.url.path() == "/302").count(),
            1
        );
        assert_eq!(requests.len(), 5);
        assert_eq!(parse_retry_after("soon"), None);
        assert_eq!(parse_retry_after(" 0 "), Some(Duration::ZERO));
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"),
            Some(Duration::ZERO),
            "a date in the past: now"
        );
        assert_eq!(
            parse_retry_after("999999"),
            Some(Duration::from_secs(86_400))
        );
    }
}
