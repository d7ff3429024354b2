//! coturn's `redis-userdb` connection string (`"ip=10.0.0.5 dbname=2 password=pw port=6379"`,
//! the keys of coturn's `dbd_redis_conninfo.c`) as rturn's `[auth] redis` URL. rturn reads
//! the same keys from that Redis (`crate::auth::redis`).

use super::line::{Skip, attention};

/// `redis://[[user]:password@]host:port[/db]` from coturn's connection string; a TLS
/// connection (which rturn's Redis client does not speak) or a bad value is reported instead.
pub(super) fn to_url(conninfo: &str) -> Result<String, Skip> {
    let (mut host, mut port, mut db) = ("127.0.0.1".to_owned(), 6379u16, None::<u32>);
    let (mut user, mut password) = (None::<&str>, None::<&str>);
    for pair in conninfo.split_whitespace() {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        match key {
            "host" | "ip" | "addr" | "ipaddr" | "hostaddr" => host = value.to_owned(),
            "dbname" | "db" | "database" => {
                db =
                    Some(value.parse().map_err(|_| {
                        attention(format!("{key}={value:?} is not a database number"))
                    })?);
            }
            "user" | "uname" | "name" | "username" => user = Some(value),
            "password" | "pwd" | "passwd" | "secret" => password = Some(value),
            "port" | "p" => {
                port = value
                    .parse()
                    .map_err(|_| attention(format!("port={value:?} is not a port number")))?;
            }
            "tls" | "ssl" if !matches!(value, "1" | "true" | "on" | "yes") => {}
            "tls" | "ssl" | "tls-ca" | "ca" | "cacert" | "tls-capath" | "capath" | "tls-cert"
            | "cert" | "tls-key" | "clientkey" | "tls-sni" | "sni" | "servername" => {
                return Err(attention(
                    "rturn reaches Redis without TLS: put it on a private network or loopback \
                     (a TLS tunnel, say) and set [auth] redis = \"redis://HOST:PORT\" by hand",
                ));
            }
            // connect_timeout, timeout, tls-verify: rturn times every Redis call itself.
            _ => {}
        }
    }
    if host.is_empty() || host.contains(['/', '@', ' ']) {
        return Err(attention(format!("{host:?} is not a Redis host")));
    }
    let host = match host.parse::<std::net::Ipv6Addr>() {
        Ok(v6) => format!("[{v6}]"),
        Err(_) => host,
    };
    let credentials = match (user, password) {
        (_, None | Some("")) => String::new(),
        (user, Some(password)) => {
            format!("{}:{}@", escape(user.unwrap_or("")), escape(password))
        }
    };
    let db = db.map(|db| format!("/{db}")).unwrap_or_default();
    Ok(format!("redis://{credentials}{host}:{port}{db}"))
}

/// Percent-encodes everything but RFC 3986's unreserved characters.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(text: &str) -> String {
        to_url(text).unwrap_or_else(|e| panic!("{text}: {}", e.reason))
    }

    #[test]
    fn coturn_connection_strings_become_urls() {
        assert_eq!(url(""), "redis://127.0.0.1:6379");
        assert_eq!(
            url("ip=10.0.0.5 dbname=2 password=turn port=6380 connect_timeout=30"),
            "redis://:turn@10.0.0.5:6380/2"
        );
        assert_eq!(
            url("host=redis.internal user=turn pwd=p@ss:w/rd database=0"),
            "redis://turn:p%40ss%3Aw%2Frd@redis.internal:6379/0"
        );
        assert_eq!(url("ip=::1 tls=false"), "redis://[::1]:6379");
        for text in ["ip=::1 db=3", "host=h user=u pwd=p@ss:w/rd"] {
            assert!(redis::Client::open(url(text).as_str()).is_ok(), "{text}");
        }
    }

    #[test]
    fn tls_and_bad_values_need_attention() {
        for text in [
            "ip=db tls=1",
            "ip=db cacert=/x.pem",
            "port=http",
            "dbname=x",
            "ip=a/b",
        ] {
            let skip = to_url(text)
                .err()
                .unwrap_or_else(|| panic!("{text} converted"));
            assert!(skip.attention, "{text}");
        }
    }
}
