//! SCRAM client message parsing (RFC 5802 §7), strict about attribute order.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;

use super::SaslFailure;

const MALFORMED: SaslFailure = SaslFailure::MalformedRequest;

/// The GS2 channel-binding flag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CbFlag {
    /// `n`: the client does not support channel binding.
    No,
    /// `y`: the client supports it but thinks the server does not.
    ClientOnly,
    /// `p=tls-exporter`: the client binds to the TLS exporter.
    TlsExporter,
    /// `p=tls-server-end-point`: the client binds to the hash of our certificate.
    TlsServerEndPoint,
}

/// A parsed client-first-message.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct ClientFirst<'a> {
    /// Channel-binding flag.
    pub cb: CbFlag,
    /// The `a=` authzid, decoded; empty when absent.
    pub authzid: String,
    /// The GS2 header exactly as sent (it goes into `c=`).
    pub gs2_header: &'a [u8],
    /// client-first-message-bare exactly as sent (it goes into AuthMessage).
    pub bare: &'a str,
    /// The `n=` username, decoded.
    pub username: String,
    /// The client nonce.
    pub nonce: &'a str,
}

/// Parses `gs2-header client-first-message-bare`.
pub(crate) fn parse_client_first(msg: &[u8]) -> Result<ClientFirst<'_>, SaslFailure> {
    let s = std::str::from_utf8(msg).map_err(|_| MALFORMED)?;
    let (flag, rest) = s.split_once(',').ok_or(MALFORMED)?;
    let cb = match flag {
        "n" => CbFlag::No,
        "y" => CbFlag::ClientOnly,
        "p=tls-exporter" => CbFlag::TlsExporter,
        "p=tls-server-end-point" => CbFlag::TlsServerEndPoint,
        // A binding type we do not offer (tls-unique).
        f if f.starts_with("p=") => return Err(SaslFailure::NotAuthorized),
        _ => return Err(MALFORMED),
    };
    let (authz, bare) = rest.split_once(',').ok_or(MALFORMED)?;
    let authzid = if authz.is_empty() {
        String::new()
    } else {
        decode_saslname(authz.strip_prefix("a=").ok_or(MALFORMED)?)?
    };
    let gs2_header = &msg[..flag.len() + authz.len() + 2];
    // A mandatory extension we cannot know (RFC 5802 §5.1 `m=`) fails the exchange.
    if bare.starts_with("m=") {
        return Err(MALFORMED);
    }
    let mut attrs = bare.split(',');
    let user = attrs
        .next()
        .and_then(|a| a.strip_prefix("n="))
        .ok_or(MALFORMED)?;
    let username = decode_saslname(user)?;
    let nonce = attrs
        .next()
        .and_then(|a| a.strip_prefix("r="))
        .ok_or(MALFORMED)?;
    if !printable_nonce(nonce) {
        return Err(MALFORMED);
    }
    attrs.try_for_each(extension)?;
    Ok(ClientFirst {
        cb,
        authzid,
        gs2_header,
        bare,
        username,
        nonce,
    })
}

/// A parsed client-final-message.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct ClientFinal<'a> {
    /// The decoded `c=` value (GS2 header plus channel-binding data).
    pub cbind_input: Vec<u8>,
    /// The `r=` nonce.
    pub nonce: &'a str,
    /// client-final-message-without-proof (it goes into AuthMessage).
    pub without_proof: &'a str,
    /// The decoded `p=` proof.
    pub proof: Vec<u8>,
}

/// Parses `c=...,r=...[,ext...],p=...`.
pub(crate) fn parse_client_final(msg: &[u8]) -> Result<ClientFinal<'_>, SaslFailure> {
    let s = std::str::from_utf8(msg).map_err(|_| MALFORMED)?;
    let (without_proof, proof) = s.rsplit_once(",p=").ok_or(MALFORMED)?;
    let mut attrs = without_proof.split(',');
    let c = attrs
        .next()
        .and_then(|a| a.strip_prefix("c="))
        .ok_or(MALFORMED)?;
    let nonce = attrs
        .next()
        .and_then(|a| a.strip_prefix("r="))
        .ok_or(MALFORMED)?;
    attrs.try_for_each(extension)?;
    Ok(ClientFinal {
        cbind_input: B64.decode(c).map_err(|_| MALFORMED)?,
        nonce,
        without_proof,
        proof: B64.decode(proof).map_err(|_| MALFORMED)?,
    })
}

/// An optional extension `x=value` (ignored), never a mandatory `m=`.
fn extension(attr: &str) -> Result<(), SaslFailure> {
    let mut b = attr.bytes();
    match (b.next(), b.next()) {
        (Some(n), Some(b'=')) if n.is_ascii_alphabetic() && n != b'm' => Ok(()),
        _ => Err(MALFORMED),
    }
}

/// Nonces are printable ASCII except `,` (RFC 5802 §7), and not empty.
fn printable_nonce(n: &str) -> bool {
    !n.is_empty() && n.bytes().all(|b| (0x21..=0x7e).contains(&b) && b != b',')
}

/// Decodes a saslname: `=2C` is `,` and `=3D` is `=`; any other `=` is an error.
fn decode_saslname(s: &str) -> Result<String, SaslFailure> {
    if s.is_empty() {
        return Err(MALFORMED);
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('=') {
        out.push_str(&rest[..i]);
        let esc = rest.get(i + 1..i + 3).ok_or(MALFORMED)?;
        out.push(match esc {
            "2C" => ',',
            "3D" => '=',
            _ => return Err(MALFORMED),
        });
        rest = &rest[i + 3..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_first_fields() {
        let m = parse_client_first(b"n,a=u=2C@x,n=a=2Cb=3Dc,r=abc,x=ext")
            .unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(m.cb, CbFlag::No);
        assert_eq!(m.authzid, "u,@x");
        assert_eq!(m.gs2_header, b"n,a=u=2C@x,");
        assert_eq!(m.bare, "n=a=2Cb=3Dc,r=abc,x=ext");
        assert_eq!(m.username, "a,b=c");
        assert_eq!(m.nonce, "abc");
        let p = parse_client_first(b"p=tls-exporter,,n=u,r=x").map(|m| (m.cb, m.gs2_header));
        assert_eq!(p, Ok((CbFlag::TlsExporter, &b"p=tls-exporter,,"[..])));
        let y = parse_client_first(b"y,,n=u,r=x").map(|m| m.cb);
        assert_eq!(y, Ok(CbFlag::ClientOnly));
    }

    #[test]
    fn client_first_errors() {
        use SaslFailure::*;
        let cases: [(&[u8], SaslFailure); 13] = [
            (b"p=tls-unique,,n=u,r=x", NotAuthorized),
            (b"x,,n=u,r=x", MalformedRequest),
            (b"n,,m=ext,n=u,r=x", MalformedRequest),
            (b"n,,r=x,n=u", MalformedRequest),
            (b"n,,n=u", MalformedRequest),
            (b"n,,n=,r=x", MalformedRequest),
            (b"n,,n=u,r=", MalformedRequest),
            (b"n,,n=a=2Xb,r=x", MalformedRequest),
            (b"n,,n=ab=,r=x", MalformedRequest),
            (b"n,,n=u,r=x,m=y", MalformedRequest),
            (b"n,b=z,n=u,r=x", MalformedRequest),
            (b"n,,n=u,r=a\x7fb", MalformedRequest),
            (b"n", MalformedRequest),
        ];
        for (msg, want) in cases {
            assert_eq!(
                parse_client_first(msg).err(),
                Some(want),
                "{:?}",
                String::from_utf8_lossy(msg)
            );
        }
    }

    #[test]
    fn client_final_fields() {
        let m = parse_client_final(b"c=biws,r=abc,p=AAEC").unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(m.cbind_input, b"n,,");
        assert_eq!(m.nonce, "abc");
        assert_eq!(m.without_proof, "c=biws,r=abc");
        assert_eq!(m.proof, [0, 1, 2]);
        for bad in [
            &b"r=abc,c=biws,p=AAEC"[..],
            b"c=biws,r=abc",
            b"c=biws,p=AAEC",
            b"c=!!,r=abc,p=AAEC",
            b"c=biws,r=abc,p=!!",
            b"c=biws,r=abc,m=x,p=AAEC",
        ] {
            assert_eq!(parse_client_final(bad).err(), Some(MALFORMED), "{bad:?}");
        }
    }
}
