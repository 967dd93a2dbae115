//! The broker auth token: generated once by the I/O layer, then only ever read back from its Secret.

use rand::CryptoRng;

/// Random bytes in a token: 256 bits, far beyond guessing range, rendered as 64 hex characters.
const TOKEN_BYTES: usize = 32;

/// A new broker token: `t` followed by 64 lowercase hex characters.
///
/// The format is the Go operator's (`meshery-compat.md`): the leading letter keeps the NATS config
/// lexer from reading an all-digit token as a number. The bytes come from `rand::rng()`, rand's
/// `ThreadRng`: ChaCha12 seeded from the operating system's RNG and periodically reseeded, which rand
/// documents as a cryptographic generator; [`fill_secret`] only accepts generators that implement the
/// `CryptoRng` marker, so swapping in a non-cryptographic one fails to compile.
pub fn generate_token() -> String {
    let mut bytes = [0u8; TOKEN_BYTES];
    fill_secret(&mut rand::rng(), &mut bytes);
    format!("t{}", hex::encode(bytes))
}

/// Whether `token` has the shape [`generate_token`] produces.
///
/// For telling an operator-generated Secret that was edited or truncated by hand; a token from a
/// user-supplied `auth.secretRef` Secret may legitimately have any other shape.
pub fn is_valid_token(token: &str) -> bool {
    let Some(hex) = token.strip_prefix('t') else {
        return false;
    };
    hex.len() == TOKEN_BYTES * 2 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Fills `buf` from `rng`, which the type system requires to be a cryptographic generator.
fn fill_secret<R: CryptoRng + ?Sized>(rng: &mut R, buf: &mut [u8]) {
    rng.fill_bytes(buf);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn generated_tokens_have_the_go_operator_format() {
        for _ in 0..100 {
            let token = generate_token();
            assert_eq!(token.len(), 65, "{} characters", token.len());
            assert!(token.starts_with('t'));
            assert!(
                token[1..]
                    .chars()
                    .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c)),
                "not lowercase hex after the leading t"
            );
            assert!(is_valid_token(&token));
        }
    }

    #[test]
    fn tokens_do_not_repeat_and_use_every_hex_digit() {
        let draws = 10_000;
        let tokens: HashSet<String> = (0..draws).map(|_| generate_token()).collect();
        assert_eq!(tokens.len(), draws, "a token repeated");

        // A biased or stuck generator shows up in the digit histogram long before it repeats:
        // 640 000 hex digits should give each of the 16 values about 40 000 times.
        let mut counts = [0usize; 16];
        for token in &tokens {
            for c in token[1..].chars() {
                counts[c.to_digit(16).expect("hex digit") as usize] += 1;
            }
        }
        let expected = draws * 64 / 16;
        for (digit, count) in counts.iter().enumerate() {
            let deviation = count.abs_diff(expected) as f64 / expected as f64;
            assert!(
                deviation < 0.05,
                "digit {digit:x} drawn {count} times, expected about {expected}"
            );
        }
    }

    #[test]
    fn tokens_are_generated_independently_on_every_thread() {
        let handles: Vec<_> = (0..4)
            .map(|_| std::thread::spawn(|| (0..250).map(|_| generate_token()).collect::<Vec<_>>()))
            .collect();
        let all: HashSet<String> = handles
            .into_iter()
            .flat_map(|h| h.join().expect("thread panicked"))
            .collect();
        assert_eq!(all.len(), 1000);
    }

    #[test]
    fn validation_rejects_other_shapes() {
        let good = format!("t{}", "0123456789abcdef".repeat(4));
        assert!(is_valid_token(&good));
        for bad in [
            String::new(),
            "t".to_string(),
            good[1..].to_string(),                     // no leading t
            format!("T{}", &good[1..]),                // upper-case prefix
            good.to_uppercase().replacen('T', "t", 1), // upper-case hex
            good[..64].to_string(),                    // one digit short
            format!("{good}0"),                        // one digit long
            good.replacen('a', "g", 1),                // not hex
            good.replacen('a', "é", 1),                // multi-byte character
        ] {
            assert!(!is_valid_token(&bad), "{bad:?} accepted");
        }
    }
}
