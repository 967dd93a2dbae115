//! Standard base64 (RFC 4648), through the `base64` crate, to compare Secret `data` as bytes and to fold
//! `stringData` into `data` the way the API server does.

use base64::Engine;
use base64::alphabet::STANDARD;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};

/// Secret data as clients write it: padding optional, stray trailing bits tolerated.
const LENIENT: GeneralPurpose = GeneralPurpose::new(
    &STANDARD,
    GeneralPurposeConfig::new()
        .with_decode_padding_mode(DecodePaddingMode::Indifferent)
        .with_decode_allow_trailing_bits(true),
);

pub(crate) fn encode(bytes: &[u8]) -> String {
    LENIENT.encode(bytes)
}

/// Decodes padded or unpadded base64, ignoring whitespace; `None` when the text is not base64.
pub(crate) fn decode(text: &str) -> Option<Vec<u8>> {
    let compact: String = text.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    LENIENT.decode(compact).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_every_padding_length() {
        for text in ["", "t", "to", "tok", "token", "t0123456789abcdef"] {
            let encoded = encode(text.as_bytes());
            assert_eq!(
                decode(&encoded).as_deref(),
                Some(text.as_bytes()),
                "{encoded}"
            );
        }
        assert_eq!(encode(b"token"), "dG9rZW4=");
        assert_eq!(decode("dG9rZW4").as_deref(), Some(&b"token"[..]));
        assert_eq!(decode("not base64!"), None);
    }
}
