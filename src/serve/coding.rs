//! Content codings of report bodies: which one a request accepts, and the
//! encoding itself.
//!
//! A report answer is compressed here, once per coding, and kept with the
//! answer in the result cache; the compression layer passes a body that
//! already has its `Content-Encoding`. So a cached answer costs a browser
//! (which always accepts gzip and br) a copy, not a compression: compressing
//! a 350 kB hourly answer took about 3.5 ms of CPU per request.
//!
//! What always holds: the chosen coding is one the request accepts with a
//! q-value above zero, or identity; the encoded bytes decode to the
//! identity body exactly (tested).

use std::io::Write;

use axum::http::{HeaderMap, header};
use bytes::Bytes;

/// A content coding of a report body.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Coding {
    Identity = 0,
    Gzip = 1,
    Brotli = 2,
}

impl Coding {
    pub const COUNT: usize = 3;

    /// The coding for a request's `Accept-Encoding`: the accepted one with
    /// the highest q-value, br before gzip before identity when they tie,
    /// as the compression layer chooses for every other response.
    pub fn accepted(headers: &HeaderMap) -> Coding {
        headers
            .get_all(header::ACCEPT_ENCODING)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .filter_map(|item| {
                let mut parts = item.split(';');
                let coding = match parts.next()?.trim() {
                    name if name.eq_ignore_ascii_case("br") => Coding::Brotli,
                    name if name.eq_ignore_ascii_case("gzip") || name.eq_ignore_ascii_case("x-gzip") => Coding::Gzip,
                    name if name.eq_ignore_ascii_case("identity") => Coding::Identity,
                    _ => return None,
                };
                let q = parts
                    .find_map(|p| p.trim().strip_prefix("q=").or_else(|| p.trim().strip_prefix("Q=")))
                    .map_or(Some(1000), q_value)?;
                (q > 0).then_some((q, coding))
            })
            .max()
            .map_or(Coding::Identity, |(_, coding)| coding)
    }

    /// The header value, for codings other than identity.
    pub fn header_value(self) -> Option<&'static str> {
        match self {
            Coding::Identity => None,
            Coding::Gzip => Some("gzip"),
            Coding::Brotli => Some("br"),
        }
    }

    /// `body` in this coding.
    pub fn encode(self, body: &[u8]) -> Bytes {
        match self {
            Coding::Identity => Bytes::copy_from_slice(body),
            Coding::Gzip => {
                let mut encoder =
                    flate2::write::GzEncoder::new(Vec::with_capacity(body.len() / 8), flate2::Compression::default());
                encoder.write_all(body).expect("writing to memory");
                encoder.finish().expect("writing to memory").into()
            }
            Coding::Brotli => {
                // Quality 5 of 11: fast enough to answer with (once per
                // answer), and smaller than the compression layer's default
                // made it here (q3's 347 kB: 11.7 kB against 14.1 kB).
                let params = brotli::enc::BrotliEncoderParams {
                    quality: 5,
                    lgwin: 22,
                    ..Default::default()
                };
                let mut out = Vec::with_capacity(body.len() / 8);
                brotli::BrotliCompress(&mut &body[..], &mut out, &params).expect("writing to memory");
                out.into()
            }
        }
    }
}

/// A q-value (`0`, `0.5`, `1.000`) in thousandths; `None` when malformed,
/// which drops the item, as the compression layer does.
fn q_value(s: &str) -> Option<u16> {
    let (whole, fraction) = s.split_once('.').unwrap_or((s, ""));
    if fraction.len() > 3 || !fraction.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let thousandths: u16 = format!("{fraction:0<3}").parse().ok()?;
    match whole {
        "0" => Some(thousandths),
        "1" if thousandths == 0 => Some(1000),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use axum::http::HeaderValue;

    use super::*;

    fn accepted(values: &[&str]) -> Coding {
        let mut headers = HeaderMap::new();
        for v in values {
            headers.append(header::ACCEPT_ENCODING, HeaderValue::from_str(v).unwrap());
        }
        Coding::accepted(&headers)
    }

    #[test]
    fn the_accepted_coding_follows_q_values_then_prefers_br() {
        assert_eq!(accepted(&[]), Coding::Identity);
        assert_eq!(accepted(&["gzip, deflate, br, zstd"]), Coding::Brotli);
        assert_eq!(accepted(&["gzip"]), Coding::Gzip);
        assert_eq!(accepted(&["GZIP"]), Coding::Gzip);
        assert_eq!(accepted(&["deflate", "gzip"]), Coding::Gzip);
        assert_eq!(accepted(&["br;q=0, gzip"]), Coding::Gzip);
        assert_eq!(accepted(&["br;q=0.5, gzip;q=0.8"]), Coding::Gzip);
        assert_eq!(accepted(&["br;q=0.5, gzip;q=0.5"]), Coding::Brotli);
        assert_eq!(accepted(&["gzip;q=0.5, identity"]), Coding::Identity);
        assert_eq!(accepted(&["gzip;q=0"]), Coding::Identity);
        assert_eq!(
            accepted(&["br;q=2, gzip;q=0.1"]),
            Coding::Gzip,
            "a malformed item is dropped"
        );
        assert_eq!(accepted(&["zstd, deflate"]), Coding::Identity);
    }

    #[test]
    fn q_values_are_thousandths() {
        assert_eq!(q_value("1"), Some(1000));
        assert_eq!(q_value("1.000"), Some(1000));
        assert_eq!(q_value("0.5"), Some(500));
        assert_eq!(q_value("0.125"), Some(125));
        assert_eq!(q_value("0"), Some(0));
        for bad in ["1.5", "2", "0.1234", "-0.5", "", "x"] {
            assert_eq!(q_value(bad), None, "{bad}");
        }
    }

    #[test]
    fn every_coding_decodes_to_the_body() {
        let body: Vec<u8> = (0..50_000u32)
            .flat_map(|i| format!("{{\"value\":{}}},", i % 97).into_bytes())
            .collect();
        for coding in [Coding::Identity, Coding::Gzip, Coding::Brotli] {
            let encoded = coding.encode(&body);
            let mut decoded = Vec::new();
            match coding {
                Coding::Identity => decoded = encoded.to_vec(),
                Coding::Gzip => {
                    flate2::read::GzDecoder::new(&encoded[..])
                        .read_to_end(&mut decoded)
                        .unwrap();
                }
                Coding::Brotli => {
                    brotli::Decompressor::new(&encoded[..], 4096)
                        .read_to_end(&mut decoded)
                        .unwrap();
                }
            }
            assert_eq!(decoded, body, "{coding:?}");
            if coding != Coding::Identity {
                assert!(encoded.len() * 10 < body.len(), "{coding:?} compresses");
            }
        }
    }
}
