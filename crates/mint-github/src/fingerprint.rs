//! Which key signs, said the way GitHub says it: `SHA256:` and the base64 of the SHA-256 of the public key's
//! DER (`SubjectPublicKeyInfo`), as the App's settings page lists each of its private keys.

use std::fmt;

use base64::Engine as _;

/// A public key's fingerprint, as GitHub shows it (`SHA256:…`). Public, so fine to log.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct KeyFingerprint(String);

impl KeyFingerprint {
    /// The fingerprint of an RSA public key given by its modulus and public exponent (big-endian, unsigned).
    pub fn of_rsa(modulus: &[u8], exponent: &[u8]) -> Self {
        Self::of_rsa_public_key_der(&rsa_public_key_der(modulus, exponent))
    }

    /// The fingerprint of a PKCS#1 `RSAPublicKey` DER (what ring's `public_key()` holds).
    pub fn of_rsa_public_key_der(pkcs1: &[u8]) -> Self {
        let spki = spki_der(pkcs1);
        let digest = ring::digest::digest(&ring::digest::SHA256, &spki);
        Self(format!(
            "SHA256:{}",
            base64::engine::general_purpose::STANDARD.encode(digest.as_ref())
        ))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for KeyFingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for KeyFingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyFingerprint({})", self.0)
    }
}

/// `RSAPublicKey ::= SEQUENCE { modulus INTEGER, publicExponent INTEGER }` (RFC 8017 A.1.1).
fn rsa_public_key_der(modulus: &[u8], exponent: &[u8]) -> Vec<u8> {
    let mut body = der_unsigned_integer(modulus);
    body.extend(der_unsigned_integer(exponent));
    der(0x30, &body)
}

/// `SubjectPublicKeyInfo` for rsaEncryption (RFC 5280 4.1, RFC 3279 2.3.1): what `openssl rsa -pubout
/// -outform DER` writes and GitHub hashes.
fn spki_der(rsa_public_key: &[u8]) -> Vec<u8> {
    // SEQUENCE { OID 1.2.840.113549.1.1.1, NULL }
    const ALGORITHM: &[u8] = &[
        0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01, 0x05, 0x00,
    ];
    let mut bits = Vec::with_capacity(rsa_public_key.len() + 1);
    bits.push(0); // no unused bits
    bits.extend_from_slice(rsa_public_key);
    let mut body = ALGORITHM.to_vec();
    body.extend(der(0x03, &bits));
    der(0x30, &body)
}

fn der_unsigned_integer(big_endian: &[u8]) -> Vec<u8> {
    let start = big_endian.iter().position(|b| *b != 0).unwrap_or(big_endian.len());
    let digits = &big_endian[start..];
    let mut content = Vec::with_capacity(digits.len() + 1);
    // A leading 0 keeps a number whose top bit is set positive, and zero is one 0 byte.
    if digits.first().is_none_or(|b| b & 0x80 != 0) {
        content.push(0);
    }
    content.extend_from_slice(digits);
    der(0x02, &content)
}

fn der(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(content.len() + 6);
    out.push(tag);
    let len = content.len();
    if len < 0x80 {
        out.push(u8::try_from(len).expect("below 0x80"));
    } else {
        let bytes = len.to_be_bytes();
        let skip = bytes.iter().position(|b| *b != 0).unwrap_or(bytes.len() - 1);
        out.push(0x80 | u8::try_from(bytes.len() - skip).expect("at most 8 length bytes"));
        out.extend_from_slice(&bytes[skip..]);
    }
    out.extend_from_slice(content);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use rsa::pkcs1::EncodeRsaPublicKey;
    use rsa::pkcs8::EncodePublicKey;
    use rsa::traits::PublicKeyParts;

    #[test]
    fn fingerprints_hash_the_same_der_openssl_writes() {
        let private = rsa::RsaPrivateKey::new(&mut rand::rngs::OsRng, 2048).expect("keygen");
        let public = private.to_public_key();
        let spki = public.to_public_key_der().expect("der");
        let pkcs1 = public.to_pkcs1_der().expect("der");
        assert_eq!(
            rsa_public_key_der(&public.n().to_bytes_be(), &public.e().to_bytes_be()),
            pkcs1.as_bytes()
        );
        assert_eq!(spki_der(pkcs1.as_bytes()), spki.as_bytes());
        let want = format!(
            "SHA256:{}",
            base64::engine::general_purpose::STANDARD
                .encode(ring::digest::digest(&ring::digest::SHA256, spki.as_bytes()))
        );
        let got = KeyFingerprint::of_rsa(&public.n().to_bytes_be(), &public.e().to_bytes_be());
        assert_eq!(got.as_str(), want);
        assert_eq!(got.as_str().len(), "SHA256:".len() + 44);
    }

    #[test]
    fn integers_are_minimal_and_positive() {
        assert_eq!(der_unsigned_integer(&[0, 0, 1, 0, 1]), [2, 3, 1, 0, 1]);
        assert_eq!(der_unsigned_integer(&[0x80]), [2, 2, 0, 0x80]);
        assert_eq!(der_unsigned_integer(&[]), [2, 1, 0]);
        assert_eq!(der(0x04, &[7; 300])[..4], [0x04, 0x82, 0x01, 0x2c]);
    }
}
