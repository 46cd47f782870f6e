//! The webhook's certificates: a CA of its own and a serving certificate it signs, kept in
//! a Secret that every replica reads (or a Secret cert-manager fills, read-only).
//!
//! Secret layout (the one cert-manager writes, so either source works): `tls.crt`,
//! `tls.key`, `ca.crt`; self-managed Secrets add `ca.key` and two annotations,
//! [`CERT_NOT_AFTER`] and [`CA_NOT_AFTER`] (unix seconds), and [`CERT_SANS`], so that the
//! renewal decision ([`plan`]) needs no X.509 parser. Serving certificates are renewed
//! when a third of their life is left; the CA is kept, so the `caBundle` the apiserver
//! trusts does not change and renewal drops no request. A CA close to its end (less than
//! one serving lifetime left) is replaced together with the serving certificate; requests
//! in the seconds until the apiserver reloads the configuration can fail then (at the
//! default ten-year CA life, once a decade; written in docs/decisions.md).

use std::collections::BTreeMap;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};

/// Annotation: when the serving certificate expires (unix seconds).
pub const CERT_NOT_AFTER: &str = "spo.x-k8s.io/cert-not-after";
/// Annotation: when the CA expires (unix seconds).
pub const CA_NOT_AFTER: &str = "spo.x-k8s.io/ca-not-after";
/// Annotation: the serving certificate's names, comma-separated.
pub const CERT_SANS: &str = "spo.x-k8s.io/cert-sans";
/// The CA's common name.
pub const CA_NAME: &str = "security-profiles-operator webhook CA";

/// The certificate material of the Secret.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Stored {
    /// `tls.crt`.
    pub cert_pem: String,
    /// `tls.key`.
    pub key_pem: String,
    /// `ca.crt`.
    pub ca_pem: String,
    /// `ca.key` (self-managed only).
    pub ca_key_pem: Option<String>,
    /// [`CERT_NOT_AFTER`].
    pub cert_not_after: Option<i64>,
    /// [`CA_NOT_AFTER`].
    pub ca_not_after: Option<i64>,
    /// [`CERT_SANS`].
    pub sans: Option<String>,
}

impl Stored {
    /// Reads a Secret's data and annotations.
    pub fn from_secret(data: &BTreeMap<String, Vec<u8>>, annotations: &BTreeMap<String, String>) -> Option<Stored> {
        let text = |k: &str| data.get(k).and_then(|v| String::from_utf8(v.clone()).ok());
        Some(Stored {
            cert_pem: text("tls.crt")?,
            key_pem: text("tls.key")?,
            ca_pem: text("ca.crt").unwrap_or_default(),
            ca_key_pem: text("ca.key"),
            cert_not_after: annotations.get(CERT_NOT_AFTER).and_then(|v| v.parse().ok()),
            ca_not_after: annotations.get(CA_NOT_AFTER).and_then(|v| v.parse().ok()),
            sans: annotations.get(CERT_SANS).cloned(),
        })
    }

    /// The Secret's data.
    pub fn data(&self) -> BTreeMap<String, Vec<u8>> {
        let mut d = BTreeMap::from([
            ("tls.crt".to_owned(), self.cert_pem.clone().into_bytes()),
            ("tls.key".to_owned(), self.key_pem.clone().into_bytes()),
            ("ca.crt".to_owned(), self.ca_pem.clone().into_bytes()),
        ]);
        if let Some(k) = &self.ca_key_pem {
            d.insert("ca.key".to_owned(), k.clone().into_bytes());
        }
        d
    }

    /// The Secret's annotations.
    pub fn annotations(&self) -> BTreeMap<String, String> {
        let mut a = BTreeMap::new();
        if let Some(t) = self.cert_not_after {
            a.insert(CERT_NOT_AFTER.to_owned(), t.to_string());
        }
        if let Some(t) = self.ca_not_after {
            a.insert(CA_NOT_AFTER.to_owned(), t.to_string());
        }
        if let Some(s) = &self.sans {
            a.insert(CERT_SANS.to_owned(), s.clone());
        }
        a
    }
}

/// Lifetimes, in seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lifetimes {
    /// The CA's.
    pub ca: i64,
    /// The serving certificate's.
    pub cert: i64,
}

impl Default for Lifetimes {
    fn default() -> Self {
        Lifetimes {
            ca: 10 * 365 * 86_400,
            cert: 365 * 86_400,
        }
    }
}

/// What to do with the stored certificates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Plan {
    /// They serve as they are; look again at this time (unix seconds).
    Keep {
        /// When the serving certificate is due for renewal.
        renew_at: i64,
    },
    /// Issue a serving certificate; `new_ca` when the CA must be made first.
    Issue {
        /// Whether to make a new CA.
        new_ca: bool,
    },
}

/// Decides renewal (pure). `sans` is the wanted name list.
pub fn plan(stored: Option<&Stored>, sans: &str, now: i64, life: Lifetimes) -> Plan {
    let Some(s) = stored else {
        return Plan::Issue { new_ca: true };
    };
    let ca_ok = s.ca_key_pem.is_some() && !s.ca_pem.is_empty() && s.ca_not_after.is_some_and(|t| t - now > life.cert);
    if !ca_ok {
        return Plan::Issue { new_ca: true };
    }
    let Some(not_after) = s.cert_not_after else {
        return Plan::Issue { new_ca: false };
    };
    let renew_at = not_after - life.cert / 3;
    // A certificate living longer than the configured lifetime (the setting was lowered)
    // is replaced too.
    if s.sans.as_deref() != Some(sans) || now >= renew_at || not_after - now > life.cert {
        return Plan::Issue { new_ca: false };
    }
    Plan::Keep { renew_at }
}

/// Why certificates could not be made.
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    /// rcgen refused.
    #[error("making the webhook's {what}")]
    Make {
        /// What was being made.
        what: &'static str,
        /// The cause.
        #[source]
        source: rcgen::Error,
    },
    /// A validity bound is out of range.
    #[error("making the webhook's certificates: time {0} (unix seconds) is out of range")]
    Time(i64),
}

fn err(what: &'static str) -> impl FnOnce(rcgen::Error) -> CertError {
    move |source| CertError::Make { what, source }
}

fn time(unix: i64) -> Result<time::OffsetDateTime, CertError> {
    time::OffsetDateTime::from_unix_timestamp(unix).map_err(|_| CertError::Time(unix))
}

fn ca_params(not_before: i64, not_after: i64) -> Result<CertificateParams, CertError> {
    let mut p = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, CA_NAME);
    p.distinguished_name = dn;
    p.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    p.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    p.not_before = time(not_before)?;
    p.not_after = time(not_after)?;
    Ok(p)
}

/// Issues a serving certificate for `sans` (DNS names or IP addresses), making a new CA
/// when `new_ca` or when `stored` has none.
pub fn issue(
    stored: Option<&Stored>,
    new_ca: bool,
    sans: &[String],
    now: i64,
    life: Lifetimes,
) -> Result<Stored, CertError> {
    let not_before = now - 300; // clock skew between replicas and the apiserver
    let reuse = stored.filter(|_| !new_ca).and_then(|s| {
        let key = KeyPair::from_pem(s.ca_key_pem.as_deref()?).ok()?;
        Some((s.ca_pem.clone(), key, s.ca_not_after?))
    });
    let (ca_pem, ca_key, ca_not_after) = match reuse {
        Some(x) => x,
        None => {
            let key = KeyPair::generate().map_err(err("CA key"))?;
            let not_after = now + life.ca;
            let cert = ca_params(not_before, not_after)?.self_signed(&key).map_err(err("CA"))?;
            (cert.pem(), key, not_after)
        }
    };
    // The issuer is rebuilt from its name and key: a certificate is signed by name and key
    // identifier, both of which are the CA's.
    let issuer = Issuer::new(ca_params(not_before, ca_not_after)?, &ca_key);
    let mut p = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(
        DnType::CommonName,
        sans.first().cloned().unwrap_or_else(|| "spo-webhook".into()),
    );
    p.distinguished_name = dn;
    p.subject_alt_names = sans
        .iter()
        .map(|s| match s.parse::<std::net::IpAddr>() {
            Ok(ip) => Ok(SanType::IpAddress(ip)),
            Err(_) => s
                .clone()
                .try_into()
                .map(SanType::DnsName)
                .map_err(err("certificate name")),
        })
        .collect::<Result<_, _>>()?;
    p.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
    p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    p.use_authority_key_identifier_extension = true;
    let cert_not_after = (now + life.cert).min(ca_not_after);
    p.not_before = time(not_before)?;
    p.not_after = time(cert_not_after)?;
    let key = KeyPair::generate().map_err(err("serving key"))?;
    let cert = p.signed_by(&key, &issuer).map_err(err("serving certificate"))?;
    Ok(Stored {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
        ca_pem,
        ca_key_pem: Some(ca_key.serialize_pem()),
        cert_not_after: Some(cert_not_after),
        ca_not_after: Some(ca_not_after),
        sans: Some(sans.join(",")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIFE: Lifetimes = Lifetimes { ca: 1000, cert: 300 };

    #[test]
    fn plan_renews_at_two_thirds_and_replaces_a_dying_ca() {
        assert_eq!(plan(None, "a", 0, LIFE), Plan::Issue { new_ca: true });
        let s = issue(None, true, &["a".into()], 0, LIFE).expect("issue");
        assert_eq!(s.cert_not_after, Some(300));
        assert_eq!(plan(Some(&s), "a", 0, LIFE), Plan::Keep { renew_at: 200 });
        assert_eq!(plan(Some(&s), "a", 199, LIFE), Plan::Keep { renew_at: 200 });
        assert_eq!(plan(Some(&s), "a", 200, LIFE), Plan::Issue { new_ca: false });
        assert_eq!(
            plan(Some(&s), "b", 0, LIFE),
            Plan::Issue { new_ca: false },
            "names changed"
        );
        let shorter = Lifetimes { ca: 1000, cert: 100 };
        assert_eq!(
            plan(Some(&s), "a", 0, shorter),
            Plan::Issue { new_ca: false },
            "lifetime lowered"
        );
        // CA with less than one serving lifetime left: replaced.
        assert_eq!(plan(Some(&s), "a", 700, LIFE), Plan::Issue { new_ca: true });
        let mut no_key = s.clone();
        no_key.ca_key_pem = None;
        assert_eq!(plan(Some(&no_key), "a", 0, LIFE), Plan::Issue { new_ca: true });
    }

    #[test]
    fn renewal_keeps_the_ca_and_the_new_certificate_verifies_against_it() {
        let first = issue(
            None,
            true,
            &["svc.ns.svc".into(), "127.0.0.1".into()],
            1_000_000,
            Lifetimes::default(),
        )
        .expect("first");
        let second = issue(
            Some(&first),
            false,
            &["svc.ns.svc".into(), "127.0.0.1".into()],
            1_000_100,
            Lifetimes::default(),
        )
        .expect("second");
        assert_eq!(first.ca_pem, second.ca_pem);
        assert_ne!(first.cert_pem, second.cert_pem);
        // Verify the chain with rustls's verifier against the CA.
        for s in [&first, &second] {
            verify(s, "svc.ns.svc", 1_000_200).expect("verifies");
            verify(s, "127.0.0.1", 1_000_200).expect("verifies by IP");
            assert!(verify(s, "other.ns.svc", 1_000_200).is_err(), "wrong name refused");
        }
        let third = issue(
            Some(&first),
            true,
            &["svc.ns.svc".into()],
            1_000_100,
            Lifetimes::default(),
        )
        .expect("new ca");
        assert_ne!(third.ca_pem, first.ca_pem);
        let mut crossed = third.clone();
        crossed.ca_pem = first.ca_pem.clone();
        assert!(
            verify(&crossed, "svc.ns.svc", 1_000_200).is_err(),
            "another CA's certificate refused"
        );
    }

    fn verify(s: &Stored, name: &str, now: u64) -> Result<(), String> {
        use rustls::client::danger::ServerCertVerifier as _;
        use rustls::pki_types::pem::PemObject as _;
        use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
        let mut roots = rustls::RootCertStore::empty();
        for c in CertificateDer::pem_slice_iter(s.ca_pem.as_bytes()) {
            roots.add(c.map_err(|e| e.to_string())?).map_err(|e| e.to_string())?;
        }
        let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
        let verifier =
            rustls::client::WebPkiServerVerifier::builder_with_provider(std::sync::Arc::new(roots), provider)
                .build()
                .map_err(|e| e.to_string())?;
        let leaf = CertificateDer::from_pem_slice(s.cert_pem.as_bytes()).map_err(|e| e.to_string())?;
        let server = ServerName::try_from(name.to_owned()).map_err(|e| e.to_string())?;
        verifier
            .verify_server_cert(
                &leaf,
                &[],
                &server,
                &[],
                UnixTime::since_unix_epoch(std::time::Duration::from_secs(now)),
            )
            .map(|_| ())
            .map_err(|e| e.to_string())
    }
}
